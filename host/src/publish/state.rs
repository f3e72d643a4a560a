//! The served configuration kept on disk (`[publish] state_file`), so that
//! a sidecar restarted while OpenStack is unreachable serves the last good
//! configuration instead of nothing, for as long as `max_stale` allows.
//!
//! The file is one line of JSON (when the configuration was made and last
//! confirmed by OpenStack, what made it, its size and digest) followed by
//! the body as served. The digest catches a truncated or damaged file; the
//! file is replaced atomically (a temporary file in the same directory,
//! fsync, rename, fsync of the directory), so a crash leaves the old file
//! or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chunked::Chunked;

/// Names the format in the header, so that another file is not mistaken for one.
const FORMAT: &str = "traefik-openstack-state/1";

/// The header line.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    /// When the module made this configuration (RFC 3339).
    made_at: String,
    /// When OpenStack last confirmed the instances it was made from.
    confirmed_at: String,
    /// The module that made it, as `/readyz` names it.
    module: String,
    instances: usize,
    routed: usize,
    body_bytes: usize,
    body_sha256: String,
}

/// A configuration as written to, or read from, the state file.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    /// The body as served (its chunks: written out without joining them).
    pub body: Chunked,
    /// When the module made it.
    pub made_at: SystemTime,
    /// When OpenStack last confirmed the instances it was made from; the
    /// age that `max_stale` bounds.
    pub confirmed_at: SystemTime,
    /// The module that made it.
    pub module: String,
    /// Instances it was made from.
    pub instances: usize,
    /// Instances with at least one router.
    pub routed: usize,
}

/// Why the state file was not used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// It could not be read or written.
    #[error("state file {file}: {action}: {source}")]
    Io {
        /// The file.
        file: String,
        /// "cannot read", "cannot write", ...
        action: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a state file this version wrote, or it is damaged.
    #[error("state file {file}: {why}")]
    Corrupt {
        /// The file.
        file: String,
        /// What is wrong.
        why: String,
    },
    /// It is older than `max_stale`.
    #[error(
        "state file {file}: its configuration was last confirmed at {confirmed_at}, more than {max_stale} ago: not served"
    )]
    TooOld {
        /// The file.
        file: String,
        /// RFC 3339.
        confirmed_at: String,
        /// As configured.
        max_stale: String,
    },
}

/// "2026-12-03T11:45:00Z".
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Writes `saved` to `path` atomically.
pub fn write(path: &Path, saved: &Saved) -> Result<(), StateError> {
    let io = |action, source| StateError::Io {
        file: path.display().to_string(),
        action,
        source: without_temp_path(source),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let header = Header {
        format: FORMAT.into(),
        made_at: rfc3339(saved.made_at),
        confirmed_at: rfc3339(saved.confirmed_at),
        module: saved.module.clone(),
        instances: saved.instances,
        routed: saved.routed,
        body_bytes: saved.body.len(),
        body_sha256: {
            let mut digest = Sha256::new();
            for chunk in saved.body.chunks() {
                digest.update(chunk);
            }
            hex::encode(digest.finalize())
        },
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".traefik-openstack-state.")
        .tempfile_in(&dir)
        .map_err(|e| io("cannot create a temporary file beside it", e))?;
    let mut line = serde_json::to_vec(&header).expect("plain data");
    line.push(b'\n');
    tmp.write_all(&line)
        .and_then(|()| {
            saved
                .body
                .chunks()
                .iter()
                .try_for_each(|chunk| tmp.write_all(chunk))
        })
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io("cannot write", e))?;
    // On error the temporary file is removed when dropped.
    tmp.persist(path)
        .map_err(|e| io("cannot rename into place", e.error))?;
    // The rename itself is durable only once the directory is.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("cannot sync its directory", e))
}

/// Reads the state file; refuses one that is damaged or was last
/// confirmed more than `max_stale` before `now`.
pub fn read(path: &Path, max_stale: Duration, now: SystemTime) -> Result<Saved, StateError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| StateError::Io {
        file: file.clone(),
        action: "cannot read",
        source,
    })?;
    let corrupt = |why: String| StateError::Corrupt {
        file: file.clone(),
        why,
    };
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| corrupt("no header line".into()))?;
    let header: Header =
        serde_json::from_slice(&bytes[..newline]).map_err(|e| corrupt(format!("header: {e}")))?;
    if header.format != FORMAT {
        return Err(corrupt(format!(
            "format {:?}, expected {FORMAT:?}",
            header.format
        )));
    }
    let body = Bytes::from(bytes).slice(newline + 1..);
    if body.len() != header.body_bytes {
        return Err(corrupt(format!(
            "body is {} bytes, the header says {} (truncated?)",
            body.len(),
            header.body_bytes
        )));
    }
    if hex::encode(Sha256::digest(&body)) != header.body_sha256 {
        return Err(corrupt("body does not match its sha256".into()));
    }
    let time = |what: &str, text: &str| {
        humantime::parse_rfc3339(text).map_err(|e| corrupt(format!("{what} {text:?}: {e}")))
    };
    let made_at = time("made_at", &header.made_at)?;
    let confirmed_at = time("confirmed_at", &header.confirmed_at)?;
    if now
        .duration_since(confirmed_at)
        .is_ok_and(|age| age > max_stale)
    {
        return Err(StateError::TooOld {
            file,
            confirmed_at: header.confirmed_at,
            max_stale: humantime::format_duration(max_stale).to_string(),
        });
    }
    Ok(Saved {
        body: body.into(),
        made_at,
        confirmed_at,
        module: header.module,
        instances: header.instances,
        routed: header.routed,
    })
}

/// tempfile's errors name the temporary file, a new random name each
/// time: the error beneath it is what a failure is, and what a repeated
/// failure repeats (see `StateWritten`).
fn without_temp_path(e: std::io::Error) -> std::io::Error {
    if e.get_ref().is_none() {
        return e;
    }
    // "No such file or directory (os error 2) at path \"/x/.traefik-...\""
    let text = e.to_string();
    match text.split_once(" at path ") {
        Some((cause, _)) => std::io::Error::new(e.kind(), cause.to_owned()),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_fails_the_same_way_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("state");
        let fail = || {
            write(&path, &saved("{}", SystemTime::now()))
                .unwrap_err()
                .to_string()
        };
        let first = fail();
        assert!(
            first.starts_with(&format!("state file {}: cannot create", path.display()))
                && first.contains("os error 2"),
            "{first}"
        );
        assert!(!first.contains(".traefik-openstack-state."), "{first}");
        assert_eq!(fail(), first);
    }

    fn saved(body: &str, confirmed_at: SystemTime) -> Saved {
        Saved {
            body: Chunked::from(body),
            made_at: confirmed_at - Duration::from_secs(60),
            confirmed_at,
            module: "built-in (routes@0.1.1, sha256 0123456789ab)".into(),
            instances: 3,
            routed: 2,
        }
    }

    fn now() -> SystemTime {
        // Whole seconds: the file keeps seconds.
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let s = saved("{\"http\":{\"routers\":{}}}\n", now());
        write(&path, &s).unwrap();
        assert_eq!(read(&path, DAY, now() + Duration::from_secs(5)).unwrap(), s);
        // Replaced, not appended to.
        let t = saved("{}", now() + Duration::from_secs(10));
        write(&path, &t).unwrap();
        assert_eq!(read(&path, DAY, now()).unwrap(), t);
    }

    #[test]
    fn too_old_is_refused_with_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write(&path, &saved("{}", now())).unwrap();
        let later = now() + DAY + Duration::from_secs(1);
        let err = read(&path, DAY, later).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(&rfc3339(now())), "{err}");
        assert!(read(&path, DAY, now() + DAY).is_ok());
    }

    #[test]
    fn damaged_files_are_named_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write(&path, &saved("{\"http\":{}}", now())).unwrap();
        let good = std::fs::read(&path).unwrap();
        let cases: [(&str, Vec<u8>); 5] = [
            ("truncated", good[..good.len() - 2].to_vec()),
            ("sha256", {
                let mut b = good.clone();
                *b.last_mut().unwrap() = b'!';
                b
            }),
            ("no header", b"{\"http\":{}}".to_vec()),
            ("header", b"not json\n{}".to_vec()),
            ("format", {
                let t = String::from_utf8(good.clone()).unwrap();
                t.replacen(FORMAT, "other/1", 1).into_bytes()
            }),
        ];
        for (why, bytes) in cases {
            std::fs::write(&path, bytes).unwrap();
            let err = read(&path, DAY, now()).unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{why}: {err}");
            let err = err.to_string();
            assert!(err.contains(&path.display().to_string()), "{why}: {err}");
            assert!(err.contains(why), "{why}: {err}");
        }
        let missing = read(&dir.path().join("missing"), DAY, now()).unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let old = saved("{\"old\":1}", now());
        write(&path, &old).unwrap();
        // A directory where the file should go: the rename fails after
        // everything was written to the temporary file.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(blocked.join("x").parent().unwrap()).unwrap();
        std::fs::create_dir(blocked.join("x")).unwrap();
        std::fs::write(blocked.join("x").join("keep"), "").unwrap();
        let err = write(&blocked.join("x"), &old).unwrap_err().to_string();
        assert!(err.contains("cannot rename into place"), "{err}");
        let leftovers: Vec<_> = std::fs::read_dir(&blocked)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["x"], "no temporary file left behind");
        assert_eq!(read(&path, DAY, now()).unwrap(), old);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !n.starts_with(".traefik-openstack-state")),
            "{names:?}"
        );
    }
}
