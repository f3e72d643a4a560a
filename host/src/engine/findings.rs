//! What a run said about the instances (diagnostics and routes), in pieces
//! that runs share: an incremental run hands on the pieces of the groups it
//! did not touch instead of copying 100,000 routes.

use std::sync::Arc;

use crate::wit::{Diagnostic, InstanceRoutes};

/// Text shared with the engine's slots (ids).
type Text = Arc<str>;

/// One piece: a whole run's findings, or one group's.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Piece {
    /// Its instances' diagnostics, each instance's in the order they arose.
    pub diagnostics: Vec<Diagnostic>,
    /// Its exposed instances' routing summaries.
    pub routes: Vec<Route>,
}

/// An exposed instance's routing summary (the contract's `instance-routes`)
/// as held: the id shared with the engine's slot, the rest sized exactly.
/// The bindgen record is five allocations in the smallest size classes,
/// kept for as long as the group; at 100,000 instances they were about
/// 18 MB, and the holes they left among the run's temporaries more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The instance.
    pub instance_id: Text,
    /// The address its services send to, if it has one.
    pub address: Option<Box<str>>,
    /// Its routers, as named in the configuration.
    pub routers: Box<[Box<str>]>,
}

impl Route {
    /// `r` as held, its id taken from `shared` when that knows it.
    pub(crate) fn new(r: InstanceRoutes, shared: impl FnOnce(&str) -> Option<Text>) -> Self {
        let InstanceRoutes {
            instance_id,
            address,
            routers,
        } = r;
        Route {
            instance_id: shared(&instance_id).unwrap_or_else(|| instance_id.into()),
            address: address.map(String::into_boxed_str),
            routers: routers.into_iter().map(String::into_boxed_str).collect(),
        }
    }
}

/// Diagnostics and routes of a run. An instance's diagnostics may span
/// pieces (a group's, then the join's), in that order; its route is in one.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    pieces: Vec<Arc<Piece>>,
}

impl Findings {
    /// The findings of a whole run, in one piece.
    pub fn whole(diagnostics: Vec<Diagnostic>, routes: Vec<InstanceRoutes>) -> Self {
        Findings {
            pieces: vec![Arc::new(Piece {
                diagnostics,
                routes: routes
                    .into_iter()
                    .map(|r| Route::new(r, |_| None))
                    .collect(),
            })],
        }
    }

    pub(crate) fn from_pieces(pieces: Vec<Arc<Piece>>) -> Self {
        Findings { pieces }
    }

    /// Every diagnostic; an instance's in the order they arose.
    pub fn diagnostics(&self) -> impl Iterator<Item = &Diagnostic> {
        self.pieces.iter().flat_map(|p| &p.diagnostics)
    }

    /// Every routing summary, one per exposed instance.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.pieces.iter().flat_map(|p| &p.routes)
    }
}
