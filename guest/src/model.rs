//! Plain Rust mirror of the WIT types, so the policy can be used and tested
//! natively, and instances can be read from JSON fixtures.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressKind {
    Fixed,
    Floating,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub network: String,
    pub ip: String,
    pub version: u8,
    pub kind: AddressKind,
    #[serde(default)]
    pub mac: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub status: String,
    pub project_id: String,
    pub user_id: String,
    pub cloud: String,
    pub region: String,
    pub availability_zone: Option<String>,
    pub flavor_name: Option<String>,
    pub image_id: Option<String>,
    pub created: String,
    pub updated: String,
    pub description: Option<String>,
    pub metadata: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub addresses: Vec<Address>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub instance_id: String,
    pub level: Level,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRoutes {
    pub instance_id: String,
    pub address: Option<String>,
    pub routers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub config: String,
    pub diagnostics: Vec<Diagnostic>,
    pub routes: Vec<InstanceRoutes>,
}

/// Phase one's result for one instance (`phases::route`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub instance_id: String,
    /// What ties this instance to others; parts sharing none never meet.
    pub keys: Vec<String>,
    /// The policy's own encoding; empty when the instance is not routed.
    pub data: Vec<u8>,
    pub diagnostics: Vec<Diagnostic>,
}

/// One definition of the configuration, e.g. `http.routers.vm-1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `http`, `tcp` or `udp`.
    pub kind: String,
    /// `routers`, `services` or `middlewares`.
    pub table: String,
    pub name: String,
    /// The JSON `generate` writes under that name.
    pub value: String,
    /// The instances it came from, sorted.
    pub definers: Vec<String>,
}

/// Phase two's result for one group (`phases::merge`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merged {
    pub entries: Vec<Entry>,
    pub diagnostics: Vec<Diagnostic>,
    pub routes: Vec<InstanceRoutes>,
}
