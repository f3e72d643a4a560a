//! End-to-end harness: the lab (Keystone + Nova), Traefik, backends.
