//! The demo's data directory: made fresh on every run (only when it is empty or a demo directory), and
//! the configuration written into it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The file that marks a directory as the demo's, so a re-run may empty it.
pub(super) const MARKER: &str = ".zhengjiao-demo";
/// The configuration file in the demo directory.
pub(super) const CONFIG_FILE: &str = "zhengjiao.toml";
/// The policy file, relative to the demo directory.
pub(super) const POLICY_FILE: &str = "policy/2020-weidong.toml";
/// The policy, embedded.
pub(super) const POLICY_TEXT: &str = include_str!("../../policy/2020-weidong.toml");

/// Whether the directory was created, or emptied from an earlier run.
pub(super) enum Prepared {
    /// It did not exist or was empty.
    New,
    /// An earlier demo run's files were removed.
    Emptied,
}

/// Makes `dir` an empty demo directory (mode 0700: the journal holds full ID numbers). Refuses a
/// directory that holds anything but is not marked as the demo's.
pub(super) fn prepare(dir: &Path) -> Result<Prepared, String> {
    let shown = dir.display();
    let prepared = if dir.exists() {
        if !dir.is_dir() {
            return Err(format!("{shown} exists and is not a directory"));
        }
        let entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read {shown}: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        if entries.is_empty() {
            Prepared::New
        } else if dir.join(MARKER).is_file() {
            for entry in entries {
                let path = entry.path();
                let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
            }
            Prepared::Emptied
        } else {
            return Err(format!(
                "{shown} is not empty and is not a demo directory (no {MARKER} file in it): refusing to touch \
                 it; name another directory with --dir"
            ));
        }
    } else {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {shown}: {e}"))?;
        Prepared::New
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot set the mode of {shown}: {e}"))?;
    }
    std::fs::write(dir.join(MARKER), "zhengjiao demo directory: `zhengjiao demo` empties it on every run\n")
        .map_err(|e| format!("cannot write {}: {e}", dir.join(MARKER).display()))?;
    let policy = dir.join(POLICY_FILE);
    if let Some(parent) = policy.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(&policy, POLICY_TEXT).map_err(|e| format!("cannot write {}: {e}", policy.display()))?;
    Ok(prepared)
}

/// Writes a file readable by its owner only (tokens).
pub(super) fn write_private(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The hex SHA-256 of a token, as the configuration keeps it.
pub(super) fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A fresh random bearer token.
pub(super) fn new_token(prefix: &str) -> String {
    let mut rng = fastrand::Rng::new();
    let tail: String = (0..24).map(|_| char::from(b"0123456789abcdef"[rng.usize(..16)])).collect();
    format!("{prefix}-{tail}")
}

/// One configured terminal.
pub(super) struct TerminalEntry {
    pub(super) name: String,
    pub(super) transport: String,
}

/// One configured operator.
pub(super) struct OperatorEntry {
    pub(super) token: String,
    pub(super) staff_no: String,
    pub(super) point: Option<String>,
    pub(super) role: &'static str,
}

/// What the configuration names.
pub(super) struct ConfigSpec<'a> {
    pub(super) clock: &'a str,
    pub(super) ledger_url: &'a str,
    pub(super) key_id: &'a str,
    pub(super) secret: &'a str,
    pub(super) point: &'a str,
    pub(super) terminals: &'a [TerminalEntry],
    pub(super) operators: &'a [OperatorEntry],
}

/// Writes the daemon's configuration into `dir` (relative paths: the data directory and the policy
/// sit beside it); returns its path.
pub(super) fn write_config(dir: &Path, spec: &ConfigSpec<'_>) -> Result<PathBuf, String> {
    let mut text = format!(
        "# Written by `zhengjiao demo`: the daemon configuration of the demo (see zhengjiao.example.toml).\n\
         data_dir = \"data\"\npolicy = \"{POLICY_FILE}\"\n# The 2020 plan's window lies in the past: the \
         business clock is pinned inside it.\nclock = \"{}\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n[ledger]\n\
         # The in-process ledger simulator.\nendpoint = \"{}\"\nkey_id = \"{}\"\nsecret = \"{}\"\n",
        spec.clock, spec.ledger_url, spec.key_id, spec.secret
    );
    for (i, t) in spec.terminals.iter().enumerate() {
        let _ = write!(
            text,
            "\n[[terminals]]\nid = \"{}\"\ncollection_point = \"{}\"\ntill = \"{:02}\"\ntransport = \"{}\"\n",
            t.name,
            spec.point,
            i + 1,
            t.transport
        );
    }
    for o in spec.operators {
        let _ = write!(
            text,
            "\n[[operators]]\ntoken_sha256 = \"{}\"\nstaff_no = \"{}\"\n",
            sha256_hex(&o.token),
            o.staff_no
        );
        if let Some(point) = &o.point {
            let _ = writeln!(text, "collection_point = \"{point}\"");
        }
        let _ = writeln!(text, "role = \"{}\"", o.role);
    }
    let path = dir.join(CONFIG_FILE);
    write_private(&path, &text)?;
    Ok(path)
}
