//! Prepare and check (README "How it fits together"): a configuration and its mappings folder → the
//! compiled [`MappingSet`], the configuration validated against it, every mapping case run →
//! a [`Snapshot`]. `serve`, every reload and `callgate check` run exactly this, so `check`
//! passing means `serve` starts. It sits above `translate` and `cases` (it runs the cases),
//! which keeps the snapshot free of them.

use crate::cases;
use crate::config::valid::ValidConfig;
use crate::config::{self, Config};
use crate::mapping::MappingSet;
use crate::snapshot::{BuildError, Resources, Snapshot, content_hash};
use std::path::Path;
use std::sync::Arc;

/// Loads the mappings a config names, validates the config against them into a
/// [`ValidConfig`], then runs every mapping case. Pure apart from reading the mappings folder.
pub fn prepare(config: &Arc<Config>) -> Result<(ValidConfig, Arc<MappingSet>), BuildError> {
    let mappings = Arc::new(MappingSet::load(&config.mappings).map_err(BuildError::Mappings)?);
    let valid = config::validate(config, &mappings)
        .map_err(|problems| BuildError::Config(config::describe(config, &problems)))?;
    let failures = case_failures(&mappings);
    if !failures.is_empty() {
        return Err(BuildError::Cases(failures));
    }
    Ok((valid, mappings))
}

/// Prepares `config` (see [`prepare`]) and builds its snapshot, with its content hash.
pub fn load_snapshot(
    config: Arc<Config>,
    resources: &Resources,
    version: u64,
) -> Result<Snapshot, BuildError> {
    let (valid, mappings) = prepare(&config)?;
    let mut snapshot = Snapshot::build(Arc::new(valid), mappings, resources, version);
    // The directory files count as content: an edited directory is a new snapshot.
    let mut hashed = format!("{:?}", snapshot.config);
    for (name, file) in &snapshot.config.directories {
        hashed.push_str(name);
        hashed.push_str(&String::from_utf8_lossy(
            &std::fs::read(file).unwrap_or_default(),
        ));
    }
    snapshot.content_hash = content_hash(&hashed, &snapshot.config.mappings);
    Ok(snapshot)
}

/// What `callgate check` reports: every problem of the mappings in `dir`, of their cases, and
/// (given one) of the configuration against them — what [`prepare`] would refuse — each with
/// its file and line. Empty when all is valid.
pub fn problems(dir: &Path, config: Option<(&Config, &Path)>) -> Result<Checked, Vec<String>> {
    let mut problems = Vec::new();
    let mut derived = Vec::new();
    let set = match MappingSet::load(dir) {
        Ok(set) => Arc::new(set),
        Err(p) => return Err(p.0.iter().map(ToString::to_string).collect()),
    };
    if let Some((config, path)) = config {
        match config::validate(&Arc::new(config.clone()), &set) {
            Ok(valid) => derived = valid.derived(&set),
            Err(invalid) => problems.extend(config::describe(config, &invalid)),
        }
        if let Err(e) = crate::delivery::check_store(&config.store) {
            problems.push(format!("{}: {e}", path.display()));
        }
    }
    problems.extend(case_failures(&set));
    if problems.is_empty() {
        Ok(Checked {
            mappings: set,
            derived,
        })
    } else {
        Err(problems)
    }
}

/// What a passing `callgate check` found.
pub struct Checked {
    /// The compiled mappings.
    pub mappings: Arc<MappingSet>,
    /// What validation derived rather than read (see [`ValidConfig::derived`]).
    pub derived: Vec<String>,
}

/// Every failing mapping case, as `file: case `name` fails: ...`.
fn case_failures(mappings: &Arc<MappingSet>) -> Vec<String> {
    cases::run_all(mappings)
        .into_iter()
        .filter(|r| !r.passed())
        .map(|r| {
            format!(
                "{}: case `{}` fails: {}",
                r.file.display(),
                r.name,
                r.failures.join("; ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration whose second destination's header name is not one is refused by
    /// validation, naming the destination: a build never starts, so it registers no hub and
    /// no lane, and a refused reload leaves the running gateway's shared state as it was.
    #[test]
    fn a_refused_config_touches_no_shared_state() {
        let text = "routes:\n  - name: r\n    path: /r\n    from: ringcentral\n    to:\n      - { name: h, vendor: enreach, hub: /rte, auth: { jwt_secret: 0123456789abcdef } }\n      - { name: d, vendor: vidyo, url: 'http://127.0.0.1:9/', headers: { 'bad header': x } }\n";
        let config =
            Arc::new(crate::config::load::parse(Path::new("t.yaml"), text, &|_| None).unwrap());
        let resources = Resources::offline();
        let refused = load_snapshot(config, &resources, 1);
        let Err(BuildError::Config(problems)) = refused else {
            panic!("{refused:?}");
        };
        assert!(
            problems
                .join("\n")
                .contains("destination `d`: `bad header` is not a valid header name"),
            "{problems:?}"
        );
        assert_eq!(resources.hubs.len(), 0);
        assert_eq!(resources.lanes.len(), 0);
    }
}
