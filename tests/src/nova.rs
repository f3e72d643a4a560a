//! Keystone tokens and the Nova API calls the cases change servers with.
//! Calls go straight to Nova, not through the fault proxy.

use anyhow::{Context, bail};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::lab::{ADMIN_PASSWORD, ADMIN_PROJECT, ADMIN_USER, Lab, Project};

/// A project-scoped Keystone token.
pub async fn token(
    keystone_url: &str,
    user: &str,
    password: &str,
    project: &str,
) -> anyhow::Result<String> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
    let r = Client::new()
        .post(format!("{keystone_url}/auth/tokens"))
        .json(&body)
        .send()
        .await
        .context("Keystone POST /auth/tokens")?;
    if r.status() != StatusCode::CREATED {
        bail!("Keystone token for {user}/{project}: {}", r.status());
    }
    Ok(r.headers()
        .get("x-subject-token")
        .context("no X-Subject-Token")?
        .to_str()?
        .to_string())
}

/// A token of the lab's admin.
async fn admin_token(lab: &Lab) -> anyhow::Result<String> {
    token(
        &lab.keystone_url(),
        ADMIN_USER,
        ADMIN_PASSWORD,
        ADMIN_PROJECT,
    )
    .await
}

/// Revokes `subject` with an admin token (`DELETE /v3/auth/tokens`).
pub async fn revoke_token(lab: &Lab, subject: &str) -> anyhow::Result<()> {
    let admin = admin_token(lab).await?;
    let r = Client::new()
        .delete(format!("{}/auth/tokens", lab.keystone_url()))
        .header("X-Auth-Token", admin)
        .header("X-Subject-Token", subject)
        .send()
        .await?;
    if r.status() != StatusCode::NO_CONTENT {
        bail!("revoking token: {}", r.status());
    }
    Ok(())
}

/// Creates an application credential of `project`'s user, on its project,
/// through Keystone's API; returns its id and secret.
pub async fn application_credential(
    lab: &Lab,
    project: &Project,
    name: &str,
) -> anyhow::Result<(String, String)> {
    let own = token(
        &lab.keystone_url(),
        &project.user,
        &project.password,
        &project.name,
    )
    .await?;
    let r = Client::new()
        .post(format!(
            "{}/users/{}/application_credentials",
            lab.keystone_url(),
            project.user_id
        ))
        .header("X-Auth-Token", own)
        .json(&json!({"application_credential": {"name": name}}))
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await.context("application credential reply")?;
    if status != StatusCode::CREATED {
        bail!("creating application credential {name}: {status} {v}");
    }
    let cred = &v["application_credential"];
    Ok((
        cred["id"].as_str().context("no id")?.to_owned(),
        cred["secret"].as_str().context("no secret")?.to_owned(),
    ))
}

/// Enables or disables a Keystone user with an admin token; disabling
/// also revokes the user's tokens.
pub async fn set_user_enabled(lab: &Lab, user_id: &str, enabled: bool) -> anyhow::Result<()> {
    let admin = admin_token(lab).await?;
    let r = Client::new()
        .patch(format!("{}/users/{user_id}", lab.keystone_url()))
        .header("X-Auth-Token", admin)
        .json(&json!({"user": {"enabled": enabled}}))
        .send()
        .await?;
    if r.status() != StatusCode::OK {
        bail!("setting user {user_id} enabled={enabled}: {}", r.status());
    }
    Ok(())
}

/// Nova as one project's user.
pub struct Nova {
    url: String,
    token: String,
    http: Client,
}

impl Nova {
    pub async fn login(lab: &Lab, project: &Project) -> anyhow::Result<Nova> {
        Ok(Nova {
            url: lab.nova_url(),
            token: token(
                &lab.keystone_url(),
                &project.user,
                &project.password,
                &project.name,
            )
            .await?,
            http: Client::new(),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .header("X-Auth-Token", &self.token)
            .header("OpenStack-API-Version", "compute 2.90");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("Nova {method} {path}"))?;
        let status = r.status();
        let text = r.text().await?;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            bail!("Nova {method} {path}: {status} {v}");
        }
        Ok((status, v))
    }

    pub async fn server(&self, id: &str) -> anyhow::Result<Value> {
        Ok(self
            .call(Method::GET, &format!("/servers/{id}"), None)
            .await?
            .1["server"]
            .clone())
    }

    /// `PUT /servers/{id}` with a new name.
    pub async fn rename(&self, id: &str, name: &str) -> anyhow::Result<()> {
        self.call(
            Method::PUT,
            &format!("/servers/{id}"),
            Some(json!({"server": {"name": name}})),
        )
        .await?;
        Ok(())
    }

    /// `PUT /servers/{id}/metadata`: replaces all metadata.
    pub async fn replace_metadata(&self, id: &str, meta: &[(&str, &str)]) -> anyhow::Result<()> {
        let m: serde_json::Map<String, Value> = meta
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        self.call(
            Method::PUT,
            &format!("/servers/{id}/metadata"),
            Some(json!({"metadata": m})),
        )
        .await?;
        Ok(())
    }

    /// `POST /servers/{id}/metadata`: merges into the metadata.
    pub async fn update_metadata(&self, id: &str, meta: &[(&str, &str)]) -> anyhow::Result<()> {
        let m: serde_json::Map<String, Value> = meta
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        self.call(
            Method::POST,
            &format!("/servers/{id}/metadata"),
            Some(json!({"metadata": m})),
        )
        .await?;
        Ok(())
    }

    /// `DELETE /servers/{id}/metadata/{key}`.
    pub async fn delete_metadata(&self, id: &str, key: &str) -> anyhow::Result<()> {
        self.call(
            Method::DELETE,
            &format!("/servers/{id}/metadata/{key}"),
            None,
        )
        .await?;
        Ok(())
    }

    /// `PUT /servers/{id}/tags/{tag}`.
    pub async fn add_tag(&self, id: &str, tag: &str) -> anyhow::Result<()> {
        self.call(Method::PUT, &format!("/servers/{id}/tags/{tag}"), None)
            .await?;
        Ok(())
    }

    /// `DELETE /servers/{id}/tags/{tag}`.
    pub async fn delete_tag(&self, id: &str, tag: &str) -> anyhow::Result<()> {
        self.call(Method::DELETE, &format!("/servers/{id}/tags/{tag}"), None)
            .await?;
        Ok(())
    }

    /// `DELETE /servers/{id}` (a local delete: the lab's servers have no host).
    pub async fn delete_server(&self, id: &str) -> anyhow::Result<()> {
        self.call(Method::DELETE, &format!("/servers/{id}"), None)
            .await?;
        Ok(())
    }

    /// The id of this project's server `name`, if there is one.
    pub async fn server_id(&self, name: &str) -> anyhow::Result<Option<String>> {
        let (_, v) = self.call(Method::GET, "/servers", None).await?;
        Ok(v["servers"].as_array().and_then(|a| {
            a.iter()
                .find(|s| s["name"].as_str() == Some(name))
                .and_then(|s| s["id"].as_str().map(String::from))
        }))
    }

    /// Names of the servers this project sees.
    pub async fn server_names(&self) -> anyhow::Result<Vec<String>> {
        let (_, v) = self.call(Method::GET, "/servers", None).await?;
        Ok(v["servers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }
}
