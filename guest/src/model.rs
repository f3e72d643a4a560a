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
