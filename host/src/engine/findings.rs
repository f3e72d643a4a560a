//! What a run said about the instances (diagnostics and routes), in pieces
//! that runs share: an incremental run hands on the pieces of the groups it
//! did not touch instead of copying 100,000 routes.

use std::sync::Arc;

use crate::wit::{Diagnostic, InstanceRoutes};

/// One piece: a whole run's findings, or one group's.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Piece {
    /// Its instances' diagnostics, each instance's in the order they arose.
    pub diagnostics: Vec<Diagnostic>,
    /// Its exposed instances' routing summaries.
    pub routes: Vec<InstanceRoutes>,
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
                routes,
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
    pub fn routes(&self) -> impl Iterator<Item = &InstanceRoutes> {
        self.pieces.iter().flat_map(|p| &p.routes)
    }
}
