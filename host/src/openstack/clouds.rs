//! Finding credentials the way openstacksdk does.
//!
//! Operators already have a `clouds.yaml` (or an `openrc` exporting `OS_*`)
//! for the `openstack` CLI; reading the same files the same way means the
//! sidecar works with what they have. Search order, first file found wins:
//! `OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`, `~/.config/openstack/`,
//! `/etc/openstack/` (each as `.yaml`, `.yml`, `.json`); `secure.yaml`
//! (`OS_CLIENT_SECURE_FILE` first) is deep-merged over it. The cloud is the
//! config file's `cloud`, else `OS_CLOUD`, else the `OS_*` variables as a
//! cloud named `envvars`.
//!
//! Everything read from the process (environment, directories) comes in
//! through [`Lookup`], so tests can describe a machine without touching it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde_yaml_ng::{Mapping, Value};

use super::Error;

/// The name openstacksdk gives the cloud made of `OS_*` variables.
pub(crate) const ENVVARS_CLOUD: &str = "envvars";

/// Where credentials may come from: the environment and the directories
/// searched for `clouds.yaml` / `secure.yaml`.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    pub(crate) env: HashMap<String, String>,
    pub(crate) search_dirs: Vec<PathBuf>,
}

impl Lookup {
    /// This process: its `OS_*` variables and openstacksdk's directories
    /// (current directory, user config directory, `/etc/openstack`).
    pub fn from_process() -> Self {
        let env: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("OS_"))
            .collect();
        let mut search_dirs = vec![PathBuf::from(".")];
        let user_config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        if let Some(dir) = user_config {
            search_dirs.push(dir.join("openstack"));
        }
        search_dirs.push(PathBuf::from("/etc/openstack"));
        Self { env, search_dirs }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The first existing file among `$override_var`, then `<dir>/<base>.{yaml,yml,json}`.
    fn find_file(&self, base: &str, override_var: &str) -> Option<PathBuf> {
        let explicit = self.var(override_var).map(PathBuf::from);
        let searched = self
            .search_dirs
            .iter()
            .flat_map(|dir| ["yaml", "yml", "json"].map(|ext| dir.join(format!("{base}.{ext}"))));
        explicit.into_iter().chain(searched).find(|p| p.is_file())
    }
}

/// A resolved cloud: where Keystone is, who to be, which endpoints to use.
/// `Debug` is safe to log: secrets print as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// The clouds.yaml entry, or `envvars`.
    pub(crate) name: String,
    pub(crate) auth_url: String,
    pub(crate) credentials: Credentials,
    pub(crate) region: Option<String>,
    /// public, internal or admin.
    pub(crate) interface: String,
    /// Extra CA bundle (PEM) for Keystone and the services.
    pub(crate) cacert: Option<CaBundle>,
    /// false turns TLS verification off (`verify: false`, `OS_INSECURE`).
    pub(crate) verify: bool,
}

/// A CA bundle's path, with the key it was written under (`cacert` or
/// `verify`), so that an error about it names what the user wrote.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CaBundle {
    pub(crate) path: PathBuf,
    pub(crate) key: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    Password {
        user: Named,
        password: SecretString,
        project: Named,
    },
    ApplicationCredential {
        /// By id, or by name together with its owner.
        credential: AppCredentialRef,
        secret: SecretString,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AppCredentialRef {
    Id(String),
    Name { name: String, user: Named },
}

/// A user or project: by id, or by name within a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Named {
    Id(String),
    Name { name: String, domain: Domain },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Domain {
    Id(String),
    Name(String),
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Named::Id(id) => write!(f, "id {id}"),
            Named::Name { name, .. } => f.write_str(name),
        }
    }
}

impl CloudConfig {
    /// "user admin project admin" / "application credential monitoring": who
    /// this cloud authenticates as, without a secret.
    pub(crate) fn identity(&self) -> String {
        match &self.credentials {
            Credentials::Password { user, project, .. } => {
                format!("user {user} project {project}")
            }
            Credentials::ApplicationCredential { credential, .. } => match credential {
                AppCredentialRef::Id(id) => format!("application credential {id}"),
                AppCredentialRef::Name { name, user } => {
                    format!("application credential {name} of user {user}")
                }
            },
        }
    }

    /// The secrets of this cloud, to scrub them from any text that leaves.
    pub(crate) fn secrets(&self) -> Vec<&SecretString> {
        match &self.credentials {
            Credentials::Password { password, .. } => vec![password],
            Credentials::ApplicationCredential { secret, .. } => vec![secret],
        }
    }
}

/// Resolves the cloud to use. `cloud` is the config file's choice (it wins
/// over `OS_CLOUD`); `region` and `interface` override the cloud's own.
pub(crate) fn resolve(
    lookup: &Lookup,
    cloud: Option<&str>,
    region: Option<&str>,
    interface: Option<&str>,
) -> Result<CloudConfig, Error> {
    let name = cloud
        .filter(|c| !c.is_empty())
        .or_else(|| lookup.var("OS_CLOUD"));
    let (name, entry) = match name {
        Some(name) if name != ENVVARS_CLOUD => (name.to_owned(), named_cloud(lookup, name)?),
        Some(_) => (ENVVARS_CLOUD.to_owned(), envvars_cloud(lookup)?),
        None if lookup.var("OS_AUTH_URL").is_some() => {
            (ENVVARS_CLOUD.to_owned(), envvars_cloud(lookup)?)
        }
        None => {
            let hint = match lookup.find_file("clouds", "OS_CLIENT_CONFIG_FILE") {
                Some(file) => format!(
                    " ({} has: {})",
                    file.display(),
                    cloud_names(&load_yaml(&file)?).join(", ")
                ),
                None => String::new(),
            };
            return Err(Error::Config(format!(
                "no cloud chosen: set openstack.cloud in the config file, OS_CLOUD{hint}, \
                 or the OS_* variables (OS_AUTH_URL, ...)"
            )));
        }
    };
    parse_cloud(name, &entry, region, interface)
}

/// `clouds.<name>` of the first clouds file, with secure.yaml merged over it.
fn named_cloud(lookup: &Lookup, name: &str) -> Result<Value, Error> {
    let Some(file) = lookup.find_file("clouds", "OS_CLIENT_CONFIG_FILE") else {
        let searched: Vec<String> = lookup
            .search_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        return Err(Error::Config(format!(
            "cloud {name:?} asked for, but no clouds.yaml found (OS_CLIENT_CONFIG_FILE, {})",
            searched.join(", ")
        )));
    };
    let mut merged = load_yaml(&file)?;
    if let Some(secure) = lookup.find_file("secure", "OS_CLIENT_SECURE_FILE") {
        deep_merge(&mut merged, load_yaml(&secure)?);
    }
    match merged.get("clouds").and_then(|c| c.get(name)) {
        Some(entry) => Ok(entry.clone()),
        None => Err(Error::Config(format!(
            "cloud {name:?} is not in {} (it has: {})",
            file.display(),
            cloud_names(&merged).join(", ")
        ))),
    }
}

fn cloud_names(doc: &Value) -> Vec<String> {
    doc.get("clouds")
        .and_then(Value::as_mapping)
        .map(|m| m.keys().filter_map(text).collect())
        .unwrap_or_default()
}

fn load_yaml(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("{}: cannot read: {e}", path.display())))?;
    // The parser's message quotes at most a position, never file content.
    serde_yaml_ng::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: not valid YAML: {e}", path.display())))
}

/// secure.yaml over clouds.yaml: mappings merge key by key, anything else
/// is replaced (openstacksdk's `_merge_clouds`).
fn deep_merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// The `OS_*` variables in clouds.yaml shape, so one parser serves both.
fn envvars_cloud(lookup: &Lookup) -> Result<Value, Error> {
    const AUTH_VARS: &[(&str, &str)] = &[
        ("OS_AUTH_URL", "auth_url"),
        ("OS_USERNAME", "username"),
        ("OS_USER_ID", "user_id"),
        ("OS_PASSWORD", "password"),
        ("OS_PROJECT_NAME", "project_name"),
        ("OS_PROJECT_ID", "project_id"),
        ("OS_TENANT_NAME", "project_name"),
        ("OS_TENANT_ID", "project_id"),
        ("OS_USER_DOMAIN_NAME", "user_domain_name"),
        ("OS_USER_DOMAIN_ID", "user_domain_id"),
        ("OS_PROJECT_DOMAIN_NAME", "project_domain_name"),
        ("OS_PROJECT_DOMAIN_ID", "project_domain_id"),
        ("OS_DOMAIN_NAME", "domain_name"),
        ("OS_DOMAIN_ID", "domain_id"),
        ("OS_APPLICATION_CREDENTIAL_ID", "application_credential_id"),
        (
            "OS_APPLICATION_CREDENTIAL_NAME",
            "application_credential_name",
        ),
        (
            "OS_APPLICATION_CREDENTIAL_SECRET",
            "application_credential_secret",
        ),
    ];
    const CLOUD_VARS: &[(&str, &str)] = &[
        ("OS_AUTH_TYPE", "auth_type"),
        ("OS_REGION_NAME", "region_name"),
        ("OS_INTERFACE", "interface"),
        ("OS_ENDPOINT_TYPE", "interface"),
        ("OS_CACERT", "cacert"),
    ];
    let mut auth = Mapping::new();
    for (var, key) in AUTH_VARS {
        if let Some(v) = lookup.var(var) {
            auth.entry(Value::from(*key)).or_insert(Value::from(v));
        }
    }
    if auth.is_empty() {
        return Err(Error::Config(
            "cloud envvars asked for, but no OS_* variables are set".into(),
        ));
    }
    let mut cloud = Mapping::new();
    cloud.insert("auth".into(), Value::Mapping(auth));
    for (var, key) in CLOUD_VARS {
        if let Some(v) = lookup.var(var) {
            cloud.entry(Value::from(*key)).or_insert(Value::from(v));
        }
    }
    if let Some(insecure) = lookup.var("OS_INSECURE") {
        cloud.insert("verify".into(), Value::Bool(!truthy(insecure)));
    }
    Ok(Value::Mapping(cloud))
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

fn falsy(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "0" | "false" | "no" | "off"
    )
}

/// A scalar as text: YAML users write `project_id: 1234` or `verify: no`.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_cloud(
    name: String,
    entry: &Value,
    region: Option<&str>,
    interface: Option<&str>,
) -> Result<CloudConfig, Error> {
    let entry = CloudEntry::new(&name, entry);
    let auth_url = entry.auth_url()?;
    let credentials = entry.credentials()?;
    let region = entry.region(region);
    let interface = entry.interface(interface)?;
    let (verify, bundle) = entry.verify();
    let cacert = entry
        .get("cacert")
        .map(|path| CaBundle {
            path: path.into(),
            key: "cacert",
        })
        .or(bundle.map(|path| CaBundle {
            path,
            key: "verify",
        }));
    Ok(CloudConfig {
        name,
        auth_url,
        credentials,
        region,
        interface,
        cacert,
        verify,
    })
}

/// One cloud's entry of clouds.yaml, read one setting at a time.
struct CloudEntry<'a> {
    name: &'a str,
    entry: &'a Value,
    /// The entry's `auth` table (empty when missing).
    auth: Value,
}

impl<'a> CloudEntry<'a> {
    fn new(name: &'a str, entry: &'a Value) -> Self {
        let auth = entry
            .get("auth")
            .cloned()
            .unwrap_or(Value::Mapping(Mapping::new()));
        Self { name, entry, auth }
    }

    fn fail(&self, msg: impl std::fmt::Display) -> Error {
        Error::Config(format!("cloud {}: {msg}", self.name))
    }

    /// A top-level setting, as text.
    fn get(&self, key: &str) -> Option<String> {
        self.entry.get(key).and_then(text)
    }

    /// A setting of `auth`, as text.
    fn auth(&self, key: &str) -> Option<String> {
        self.auth.get(key).and_then(text)
    }

    fn secret(&self, key: &str) -> Option<SecretString> {
        self.auth(key).map(SecretString::from)
    }

    /// Keystone takes credentials in the token request's body only; a
    /// `user:password@` in the URL would be printed wherever the URL is
    /// (the start-up log, `check`, errors), so it is refused, unprinted.
    fn auth_url(&self) -> Result<String, Error> {
        let url = self
            .auth("auth_url")
            .ok_or_else(|| self.fail("auth.auth_url is missing"))?;
        let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        let authority = after_scheme
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default();
        if authority.contains('@') {
            return Err(self.fail(
                "auth.auth_url carries a user name or password (`user:password@`; not shown): put the credentials under auth",
            ));
        }
        Ok(url)
    }

    /// `<prefix>_domain_id` / `_name`; `domain_id` / `domain_name` fill in
    /// for the user and project domains.
    fn domain(&self, prefix: &str) -> Option<Domain> {
        self.auth(&format!("{prefix}_domain_id"))
            .map(Domain::Id)
            .or_else(|| {
                self.auth(&format!("{prefix}_domain_name"))
                    .map(Domain::Name)
            })
            .or_else(|| self.auth("domain_id").map(Domain::Id))
            .or_else(|| self.auth("domain_name").map(Domain::Name))
    }

    fn user(&self) -> Result<Named, Error> {
        if let Some(id) = self.auth("user_id") {
            return Ok(Named::Id(id));
        }
        let name = self
            .auth("username")
            .ok_or_else(|| self.fail("auth.username or auth.user_id is missing"))?;
        let domain = self.domain("user").ok_or_else(|| {
            self.fail(
                "auth.user_domain_name or user_domain_id (or domain_name) is needed with username",
            )
        })?;
        Ok(Named::Name { name, domain })
    }

    /// An application credential or a password, as `auth_type` says (and
    /// without it, as the secrets present say).
    fn credentials(&self) -> Result<Credentials, Error> {
        let auth_type = self
            .get("auth_type")
            .map(|t| t.to_ascii_lowercase().replace(['-', '_'], ""));
        match auth_type.as_deref() {
            None if self.auth("application_credential_secret").is_some() => {
                self.application_credential()
            }
            None | Some("password" | "v3password") => self.password(),
            Some("v3applicationcredential" | "applicationcredential") => {
                self.application_credential()
            }
            Some(_) => Err(self.fail(format!(
                "auth_type {:?} is not supported (password, v3password, v3applicationcredential)",
                self.get("auth_type").unwrap_or_default()
            ))),
        }
    }

    fn application_credential(&self) -> Result<Credentials, Error> {
        let secret = self
            .secret("application_credential_secret")
            .ok_or_else(|| self.fail("auth.application_credential_secret is missing"))?;
        let credential = match self.auth("application_credential_id") {
            Some(id) => AppCredentialRef::Id(id),
            None => AppCredentialRef::Name {
                name: self.auth("application_credential_name").ok_or_else(|| {
                    self.fail(
                        "auth.application_credential_id or application_credential_name is missing",
                    )
                })?,
                user: self.user()?,
            },
        };
        Ok(Credentials::ApplicationCredential { credential, secret })
    }

    fn password(&self) -> Result<Credentials, Error> {
        let password = self
            .secret("password")
            .ok_or_else(|| self.fail("auth.password is missing"))?;
        let project = self.project()?;
        Ok(Credentials::Password {
            user: self.user()?,
            password,
            project,
        })
    }

    /// The project a password token is scoped to (Nova needs one).
    fn project(&self) -> Result<Named, Error> {
        if let Some(id) = self.auth("project_id").or_else(|| self.auth("tenant_id")) {
            return Ok(Named::Id(id));
        }
        Ok(Named::Name {
            name: self
                .auth("project_name")
                .or_else(|| self.auth("tenant_name"))
                .ok_or_else(|| {
                    self.fail("auth.project_name or project_id is missing (Nova needs a project-scoped token)")
                })?,
            domain: self.domain("project").ok_or_else(|| {
                self.fail("auth.project_domain_name or project_domain_id (or domain_name) is needed with project_name")
            })?,
        })
    }

    /// The region asked for, else `region_name`, else the first of
    /// `regions: [RegionOne, {name: RegionTwo}]` (the multi-region form).
    fn region(&self, asked: Option<&str>) -> Option<String> {
        let first_region = || {
            self.entry
                .get("regions")
                .and_then(Value::as_sequence)
                .and_then(|r| r.first())
                .and_then(|r| text(r).or_else(|| r.get("name").and_then(text)))
        };
        asked
            .map(str::to_owned)
            .or_else(|| self.get("region_name"))
            .or_else(first_region)
    }

    /// The interface asked for, else the entry's, else `public`.
    fn interface(&self, asked: Option<&str>) -> Result<String, Error> {
        let interface = asked
            .map(str::to_owned)
            .or_else(|| self.get("interface"))
            .map(|i| i.trim_end_matches("URL").to_owned())
            .unwrap_or_else(|| "public".to_owned());
        if !matches!(interface.as_str(), "public" | "internal" | "admin") {
            return Err(self.fail(format!(
                "interface {interface:?} is not public, internal or admin"
            )));
        }
        Ok(interface)
    }

    /// `verify`: a boolean, or (as requests and openstacksdk read it) the
    /// path of a CA bundle to verify against. Only a false value turns
    /// verification off: anything else is taken for a path, so a typo
    /// fails on the missing file instead of trusting every certificate.
    fn verify(&self) -> (bool, Option<PathBuf>) {
        match self.entry.get("verify") {
            None | Some(Value::Null) => (true, None),
            Some(Value::Bool(b)) => (*b, None),
            Some(v) => match text(v) {
                Some(t) if falsy(&t) => (false, None),
                Some(t) if !truthy(&t) => (true, Some(PathBuf::from(t))),
                _ => (true, None),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const CLOUDS: &str = r#"
clouds:
  training:
    auth:
      auth_url: http://keystone.example:5000/v3
      username: admin
      project_name: admin
      user_domain_name: Default
      project_domain_id: default
    region_name: RegionOne
    interface: internal
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: http://keystone.example:5000
      application_credential_id: 423f19a4ac1e4f48bbb4180756e6eb6c
      application_credential_secret: app-secret-1
    regions: [RegionTwo]
"#;
    const SECURE: &str = r#"
clouds:
  training:
    auth:
      password: s3cret
"#;

    fn machine(files: &[(&str, &str)], env: &[(&str, &str)]) -> (tempfile::TempDir, Lookup) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let lookup = Lookup {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            search_dirs: vec![
                dir.path().join("cwd"),
                dir.path().join("user"),
                dir.path().join("etc"),
            ],
        };
        (dir, lookup)
    }

    fn password(c: &CloudConfig) -> &str {
        match &c.credentials {
            Credentials::Password { password, .. } => password.expose_secret(),
            Credentials::ApplicationCredential { secret, .. } => secret.expose_secret(),
        }
    }

    #[test]
    fn credentials_in_the_auth_url_are_refused_unprinted() {
        let yaml = "clouds:\n  c:\n    auth:\n      auth_url: https://u:Zz9secret@k.example/v3\n      application_credential_id: i\n      application_credential_secret: s\n";
        let (_d, lookup) = machine(&[("user/clouds.yaml", yaml)], &[]);
        let err = resolve(&lookup, Some("c"), None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth_url carries a user name or password"),
            "{err}"
        );
        assert!(!err.contains("Zz9secret"), "{err}");
    }

    #[test]
    fn verify_as_a_ca_path_or_a_typo_keeps_verification_on() {
        let yaml = |verify: &str| {
            format!(
                "clouds:\n  c:\n    auth:\n      auth_url: https://k.example/v3\n      application_credential_id: i\n      application_credential_secret: s\n    verify: {verify}\n"
            )
        };
        for (verify, expect, cacert) in [
            ("/etc/ssl/corp-ca.pem", true, Some("/etc/ssl/corp-ca.pem")),
            ("ture", true, Some("ture")),
            ("no", false, None),
            ("'false'", false, None),
            ("yes", true, None),
        ] {
            let (_d, lookup) = machine(&[("user/clouds.yaml", &yaml(verify))], &[]);
            let c = resolve(&lookup, Some("c"), None, None).unwrap();
            assert_eq!(
                (c.verify, c.cacert.as_ref().map(|b| b.path.as_path())),
                (expect, cacert.map(Path::new)),
                "verify: {verify}"
            );
        }
    }

    #[test]
    fn named_cloud_with_secure_yaml_merged_over_it() {
        let (_d, lookup) = machine(
            &[("user/clouds.yaml", CLOUDS), ("etc/secure.yaml", SECURE)],
            &[],
        );
        let c = resolve(&lookup, Some("training"), None, None).unwrap();
        assert_eq!(c.name, "training");
        assert_eq!(c.auth_url, "http://keystone.example:5000/v3");
        assert_eq!(password(&c), "s3cret");
        assert_eq!(c.region.as_deref(), Some("RegionOne"));
        assert_eq!(c.interface, "internal");
        assert!(c.verify);
        let Credentials::Password { user, project, .. } = &c.credentials else {
            panic!()
        };
        assert_eq!(
            *user,
            Named::Name {
                name: "admin".into(),
                domain: Domain::Name("Default".into())
            }
        );
        assert_eq!(
            *project,
            Named::Name {
                name: "admin".into(),
                domain: Domain::Id("default".into())
            }
        );
        assert_eq!(c.identity(), "user admin project admin");
    }

    #[test]
    fn search_order_first_file_wins_and_env_file_comes_first() {
        let other = CLOUDS.replace("keystone.example", "cwd.example");
        let (dir, lookup) = machine(
            &[
                ("cwd/clouds.yaml", &other),
                ("user/clouds.yaml", CLOUDS),
                (
                    "explicit.yaml",
                    &CLOUDS.replace("keystone.example", "explicit.example"),
                ),
                ("user/secure.yaml", SECURE),
            ],
            &[],
        );
        let c = resolve(&lookup, Some("training"), None, None).unwrap();
        assert_eq!(c.auth_url, "http://cwd.example:5000/v3");
        let mut lookup = lookup;
        lookup.env.insert(
            "OS_CLIENT_CONFIG_FILE".into(),
            dir.path().join("explicit.yaml").display().to_string(),
        );
        let c = resolve(&lookup, Some("training"), None, None).unwrap();
        assert_eq!(c.auth_url, "http://explicit.example:5000/v3");
    }

    #[test]
    fn config_cloud_wins_over_os_cloud_and_os_cloud_over_envvars() {
        let (_d, lookup) = machine(
            &[("etc/clouds.yml", CLOUDS), ("etc/secure.yaml", SECURE)],
            &[
                ("OS_CLOUD", "appcred"),
                ("OS_AUTH_URL", "http://env.example/v3"),
            ],
        );
        let c = resolve(&lookup, None, None, None).unwrap();
        assert_eq!(c.name, "appcred");
        assert_eq!(
            c.credentials_ref(),
            Some(&AppCredentialRef::Id(
                "423f19a4ac1e4f48bbb4180756e6eb6c".into()
            ))
        );
        assert_eq!(c.region.as_deref(), Some("RegionTwo"));
        assert_eq!(c.interface, "public");
        let c = resolve(
            &lookup,
            Some("training"),
            Some("RegionThree"),
            Some("admin"),
        )
        .unwrap();
        assert_eq!(c.name, "training");
        assert_eq!(c.region.as_deref(), Some("RegionThree"));
        assert_eq!(c.interface, "admin");
    }

    #[test]
    fn os_variables_make_the_envvars_cloud() {
        let (_d, lookup) = machine(
            &[("etc/clouds.yaml", CLOUDS)],
            &[
                ("OS_AUTH_URL", "http://env.example/identity"),
                ("OS_USERNAME", "demo"),
                ("OS_PASSWORD", "demopass"),
                ("OS_PROJECT_ID", "231c62fb0fbd485b995e8b060c3f0d98"),
                ("OS_USER_DOMAIN_ID", "default"),
                ("OS_REGION_NAME", "RegionOne"),
                ("OS_INTERFACE", "internalURL"),
                ("OS_CACERT", "/etc/ssl/ca.pem"),
                ("OS_INSECURE", "true"),
            ],
        );
        let c = resolve(&lookup, None, None, None).unwrap();
        assert_eq!(c.name, ENVVARS_CLOUD);
        assert_eq!(password(&c), "demopass");
        assert_eq!(c.interface, "internal");
        let bundle = c.cacert.as_ref().expect("cacert");
        assert_eq!(
            (bundle.path.as_path(), bundle.key),
            (Path::new("/etc/ssl/ca.pem"), "cacert")
        );
        assert!(!c.verify);
        assert_eq!(
            c.identity(),
            "user demo project id 231c62fb0fbd485b995e8b060c3f0d98"
        );

        let (_d, lookup) = machine(
            &[],
            &[
                ("OS_AUTH_URL", "http://env.example/identity"),
                ("OS_APPLICATION_CREDENTIAL_NAME", "monitoring"),
                ("OS_APPLICATION_CREDENTIAL_SECRET", "app-secret-2"),
                ("OS_USER_ID", "fd786d56402c4d1691372e7dee0d00b5"),
            ],
        );
        let c = resolve(&lookup, None, None, None).unwrap();
        assert_eq!(password(&c), "app-secret-2");
        assert_eq!(
            c.identity(),
            "application credential monitoring of user id fd786d56402c4d1691372e7dee0d00b5"
        );
    }

    #[test]
    fn clear_errors() {
        let (_d, lookup) = machine(&[("cwd/clouds.yaml", CLOUDS)], &[]);
        let err = resolve(&lookup, Some("prod"), None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"prod\" is not in") && err.contains("training, appcred"),
            "{err}"
        );
        let err = resolve(&lookup, None, None, None).unwrap_err().to_string();
        assert!(
            err.contains("no cloud chosen") && err.contains("training"),
            "{err}"
        );
        // training has no password without secure.yaml
        let err = resolve(&lookup, Some("training"), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.password is missing"), "{err}");
        let (_d, lookup) = machine(&[], &[]);
        let err = resolve(&lookup, Some("training"), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no clouds.yaml found"), "{err}");
        let (_d, lookup) = machine(
            &[(
                "cwd/clouds.yaml",
                "clouds:\n  x:\n    auth_type: v3oidcpassword\n    auth: {auth_url: http://k}\n",
            )],
            &[],
        );
        let err = resolve(&lookup, Some("x"), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not supported"), "{err}");
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let (_d, lookup) = machine(
            &[("user/clouds.yaml", CLOUDS), ("etc/secure.yaml", SECURE)],
            &[],
        );
        for name in ["training", "appcred"] {
            let c = resolve(&lookup, Some(name), None, None).unwrap();
            let debug = format!("{c:?} {c:#?}");
            assert!(
                !debug.contains("s3cret") && !debug.contains("app-secret-1"),
                "{debug}"
            );
        }
    }

    impl CloudConfig {
        fn credentials_ref(&self) -> Option<&AppCredentialRef> {
            match &self.credentials {
                Credentials::ApplicationCredential { credential, .. } => Some(credential),
                Credentials::Password { .. } => None,
            }
        }
    }
}
