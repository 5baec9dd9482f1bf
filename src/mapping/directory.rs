//! Directory tables: a `tables.yaml` entry `{directory: <name>}` whose entries come from a file
//! the configuration names (`directories: {<name>: <file>}`), so ops can map identities across
//! vendors (a RingCentral extension id → a Teams user id) without editing mappings. A file is
//! CSV (`key,value` per line; `#` comments and blank lines skipped) or, named `.yaml`/`.yml`, a
//! YAML map. Rendering sees the directories of the snapshot it runs in ([`scope`]); a key a
//! directory lacks is a [`DirectoryMiss`], which skips that destination with a stated reason,
//! never a dead letter or a silent drop.

use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// One directory: key → value.
pub type Directory = HashMap<String, Value>;

/// Every directory of a configuration, by name.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Directories(pub HashMap<String, Arc<Directory>>);

/// A lookup the directory could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("directory `{directory}` has no entry for `{key}`")]
pub struct DirectoryMiss {
    /// The directory's name.
    pub directory: String,
    /// The key looked up.
    pub key: String,
}

thread_local! {
    static SCOPE: RefCell<Option<Arc<Directories>>> = const { RefCell::new(None) };
}

/// Runs `f` with `directories` as the ones lookups see (rendering is synchronous, so a
/// thread-local scope is exact).
pub fn scope<T>(directories: &Arc<Directories>, f: impl FnOnce() -> T) -> T {
    let previous = SCOPE.with(|s| s.replace(Some(directories.clone())));
    let out = f();
    SCOPE.with(|s| *s.borrow_mut() = previous);
    out
}

/// The entry of `key` in the directory `name` of the current scope.
pub fn lookup(name: &str, key: &str) -> Result<Value, DirectoryMiss> {
    SCOPE
        .with(|s| {
            s.borrow()
                .as_ref()
                .and_then(|d| d.0.get(name)?.get(key).cloned())
        })
        .ok_or_else(|| DirectoryMiss {
            directory: name.to_string(),
            key: key.to_string(),
        })
}

/// Reads a directory file: YAML by extension (`.yaml`, `.yml`), else CSV. Errors name the
/// file and line.
pub fn load(path: &Path) -> Result<Directory, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    if yaml {
        let map: HashMap<String, Value> =
            serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(map);
    }
    let mut out = Directory::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once(',') else {
            return Err(format!(
                "{}:{}: expected `key,value`",
                path.display(),
                n + 1
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(format!("{}:{}: empty key", path.display(), n + 1));
        }
        if out
            .insert(key.to_string(), Value::String(value.to_string()))
            .is_some()
        {
            return Err(format!(
                "{}:{}: key `{key}` is listed twice",
                path.display(),
                n + 1
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_yaml_load_and_lookups_see_only_their_scope() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("users.csv");
        std::fs::write(
            &csv,
            "# extension id, Teams user id\n101, aad-1\n102,aad-2\n",
        )
        .unwrap();
        let users = load(&csv).unwrap();
        assert_eq!(users["101"], "aad-1");
        std::fs::write(&csv, "101,a\n101,b\n").unwrap();
        assert!(
            load(&csv)
                .unwrap_err()
                .contains("users.csv:2: key `101` is listed twice")
        );
        // Broken and hostile files are refused with file and line, never half-read.
        std::fs::write(&csv, "101,a\njust-a-key\n").unwrap();
        assert!(
            load(&csv)
                .unwrap_err()
                .contains("users.csv:2: expected `key,value`")
        );
        std::fs::write(&csv, " ,a\n").unwrap();
        assert!(load(&csv).unwrap_err().contains("users.csv:1: empty key"));
        std::fs::write(&csv, [0xff, 0xfe, b',', b'x']).unwrap();
        assert!(load(&csv).unwrap_err().contains("cannot read"));
        let yaml_list = dir.path().join("list.yaml");
        std::fs::write(&yaml_list, "- not\n- a map\n").unwrap();
        assert!(load(&yaml_list).unwrap_err().contains("list.yaml"));
        // A value may hold commas: only the first one splits.
        std::fs::write(&csv, "k,a,b\n").unwrap();
        assert_eq!(load(&csv).unwrap()["k"], "a,b");
        let yaml = dir.path().join("app.yaml");
        std::fs::write(&yaml, "session: app-id\n").unwrap();
        assert_eq!(load(&yaml).unwrap()["session"], "app-id");

        let dirs = Arc::new(Directories(HashMap::from([(
            "users".to_string(),
            Arc::new(users),
        )])));
        assert_eq!(scope(&dirs, || lookup("users", "102")).unwrap(), "aad-2");
        assert!(scope(&dirs, || lookup("users", "999")).is_err());
        assert!(lookup("users", "101").is_err(), "no scope, no entries");
    }
}
