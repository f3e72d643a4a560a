//! The kinds of definition labels make, in one table: the label segments
//! that name them, how diagnostics call them, and their schema.

use crate::schema::{self, Field};
use serde::{Deserialize, Serialize};

/// One kind of named definition in Traefik's dynamic configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Resource {
    HttpRouter,
    HttpService,
    HttpMiddleware,
    TcpRouter,
    TcpService,
    TcpMiddleware,
    UdpRouter,
    UdpService,
}

use Resource::*;

/// (kind, label layer, label section, what diagnostics call it).
const TABLE: [(Resource, &str, &str, &str); 8] = [
    (HttpRouter, "http", "routers", "router"),
    (HttpService, "http", "services", "service"),
    (HttpMiddleware, "http", "middlewares", "middleware"),
    (TcpRouter, "tcp", "routers", "tcp router"),
    (TcpService, "tcp", "services", "tcp service"),
    (TcpMiddleware, "tcp", "middlewares", "tcp middleware"),
    (UdpRouter, "udp", "routers", "udp router"),
    (UdpService, "udp", "services", "udp service"),
];

impl Resource {
    /// Every kind, in the order of the table.
    pub const ALL: [Resource; 8] = {
        let mut all = [HttpRouter; 8];
        let mut i = 0;
        while i < TABLE.len() {
            all[i] = TABLE[i].0;
            i += 1;
        }
        all
    };

    /// The kind `<layer>.<section>` of a label names (`http.routers`),
    /// compared case-insensitively as Traefik does.
    pub fn from_label(layer: &str, section: &str) -> Option<Resource> {
        TABLE
            .iter()
            .find(|(_, l, s, _)| layer.eq_ignore_ascii_case(l) && section.eq_ignore_ascii_case(s))
            .map(|(r, ..)| *r)
    }

    /// Its protocol in the configuration: `http`, `tcp` or `udp`.
    pub fn layer(self) -> &'static str {
        TABLE[self as usize].1
    }

    /// Its table within the protocol: `routers`, `services` or `middlewares`.
    pub fn section(self) -> &'static str {
        TABLE[self as usize].2
    }

    /// What diagnostics call it: "router", "tcp service", ...
    pub fn noun(self) -> &'static str {
        TABLE[self as usize].3
    }

    pub fn is_router(self) -> bool {
        matches!(self, HttpRouter | TcpRouter | UdpRouter)
    }

    /// The service kind a router of this kind points at.
    pub fn service_of(self) -> Option<Resource> {
        match self {
            HttpRouter => Some(HttpService),
            TcpRouter => Some(TcpService),
            UdpRouter => Some(UdpService),
            _ => None,
        }
    }

    /// The options of one definition, as Traefik's label decoder accepts them.
    pub fn fields(self) -> &'static [Field] {
        match self {
            HttpRouter => schema::ROUTER,
            HttpService => schema::HTTP_SERVICE,
            HttpMiddleware => schema::MIDDLEWARE,
            TcpRouter => schema::TCP_ROUTER,
            TcpService => schema::TCP_SERVICE,
            TcpMiddleware => schema::TCP_MIDDLEWARE,
            UdpRouter => schema::UDP_ROUTER,
            UdpService => schema::UDP_SERVICE,
        }
    }
}

/// One value per resource kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerResource<T>(pub [T; 8]);

impl<T> std::ops::Index<Resource> for PerResource<T> {
    type Output = T;
    fn index(&self, r: Resource) -> &T {
        &self.0[r as usize]
    }
}

impl<T> std::ops::IndexMut<Resource> for PerResource<T> {
    fn index_mut(&mut self, r: Resource) -> &mut T {
        &mut self.0[r as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_in_enum_order() {
        for (i, r) in Resource::ALL.iter().enumerate() {
            assert_eq!(TABLE[i].0, *r);
            assert_eq!(*r as usize, i);
        }
        assert_eq!(Resource::from_label("TCP", "Routers"), Some(TcpRouter));
        assert_eq!(Resource::from_label("udp", "middlewares"), None);
        assert_eq!(TcpService.noun(), "tcp service");
    }
}
