//! Prepare and check (DESIGN.md §1 "Layers"): a configuration and its mappings folder → the
//! compiled [`MappingSet`], the configuration validated against it, every mapping case run →
//! a [`Snapshot`]. `serve`, every reload and `callgate check` run exactly this, so `check`
//! passing means `serve` starts. It sits above `translate` and `cases` (it runs the cases),
//! which keeps the snapshot free of them.

use crate::cases;
use crate::config::{self, Config};
use crate::mapping::MappingSet;
use crate::snapshot::{BuildError, Resources, Snapshot, content_hash};
use std::path::Path;
use std::sync::Arc;

/// Loads the mappings a config names and validates the config against them, then runs every
/// mapping case. Pure apart from reading the mappings folder.
pub fn prepare(config: &Config) -> Result<Arc<MappingSet>, BuildError> {
    let mappings = Arc::new(MappingSet::load(&config.mappings).map_err(BuildError::Mappings)?);
    let problems = config::validate(config, &mappings);
    if !problems.is_empty() {
        return Err(BuildError::Config(problems));
    }
    let failures = case_failures(&mappings);
    if !failures.is_empty() {
        return Err(BuildError::Cases(failures));
    }
    Ok(mappings)
}

/// Validates `config` (see [`prepare`]) and builds its snapshot, with its content hash.
pub fn load_snapshot(
    config: Arc<Config>,
    resources: &Resources,
    version: u64,
) -> Result<Snapshot, BuildError> {
    let mappings = prepare(&config)?;
    let mut snapshot = Snapshot::build(config, mappings, resources, version)?;
    snapshot.content_hash =
        content_hash(&format!("{:?}", snapshot.config), &snapshot.config.mappings);
    Ok(snapshot)
}

/// What `callgate check` reports: every problem of the mappings in `dir`, of their cases, and
/// (given one) of the configuration against them — what [`prepare`] and the snapshot build
/// would refuse — each with its file and line. Empty when all is valid.
pub fn problems(
    dir: &Path,
    config: Option<(&Config, &Path)>,
) -> Result<Arc<MappingSet>, Vec<String>> {
    let mut problems = Vec::new();
    let set = match MappingSet::load(dir) {
        Ok(set) => Arc::new(set),
        Err(p) => return Err(p.0.iter().map(ToString::to_string).collect()),
    };
    if let Some((config, path)) = config {
        let invalid = config::validate(config, &set);
        if invalid.is_empty() {
            // What `serve` builds next: every destination's adapter and headers.
            if let Err(e) = Snapshot::build(
                Arc::new(config.clone()),
                set.clone(),
                &Resources::offline(),
                0,
            ) {
                problems.push(format!("{}: {e}", path.display()));
            }
        }
        problems.extend(invalid);
        if let Err(e) = crate::delivery::check_store(&config.store) {
            problems.push(format!("{}: {e}", path.display()));
        }
    }
    problems.extend(case_failures(&set));
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems)
    }
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
