//! The default Linux pack (`rules/linux/`) compiled into the binary, so
//! the embedded default topology detects from any working directory with
//! no file to install (`rules = "builtin"`). A directory of rules is what
//! an operator edits and reloads live; the built-in pack is fixed per
//! build. A test holds this list equal to the directory's files.

use std::path::PathBuf;

use crate::ruleset::{load_texts, Loaded};

/// The `rules` value that selects the built-in pack.
pub const BUILTIN: &str = "builtin";

/// Every file of `rules/linux/`, by its path in the repository.
pub const PACK: &[(&str, &str)] = &[
    ("rules/linux/anomaly.yml", include_str!("../../rules/linux/anomaly.yml")),
    ("rules/linux/chains.yml", include_str!("../../rules/linux/chains.yml")),
    ("rules/linux/command_and_control.yml", include_str!("../../rules/linux/command_and_control.yml")),
    ("rules/linux/credential_access.yml", include_str!("../../rules/linux/credential_access.yml")),
    ("rules/linux/defense_evasion.yml", include_str!("../../rules/linux/defense_evasion.yml")),
    ("rules/linux/discovery_collection.yml", include_str!("../../rules/linux/discovery_collection.yml")),
    ("rules/linux/execution.yml", include_str!("../../rules/linux/execution.yml")),
    ("rules/linux/persistence.yml", include_str!("../../rules/linux/persistence.yml")),
    ("rules/linux/privilege_escalation.yml", include_str!("../../rules/linux/privilege_escalation.yml")),
];

/// Loads the built-in pack (paths shown as `builtin:rules/linux/…`).
pub fn load() -> Loaded {
    load_texts(
        PACK.iter()
            .map(|(path, text)| (PathBuf::from(format!("{BUILTIN}:{path}")), Ok(text.as_bytes().to_vec())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_pack_is_every_file_of_the_directory_and_loads_cleanly() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/linux");
        let on_disk: Vec<String> = crate::ruleset::rule_files(&dir)
            .expect("rules/linux")
            .iter()
            .map(|p| format!("rules/linux/{}", p.file_name().expect("name").to_string_lossy()))
            .collect();
        let built_in: Vec<&str> = PACK.iter().map(|(path, _)| *path).collect();
        assert_eq!(built_in, on_disk, "detect/src/builtin.rs must list every file of rules/linux");
        for (path, text) in PACK {
            let file = dir.join(path.trim_start_matches("rules/linux/"));
            assert_eq!(std::fs::read_to_string(file).expect("read"), *text);
        }
        let loaded = load();
        let problems: Vec<String> = loaded.problems().map(ToString::to_string).collect();
        assert!(problems.is_empty(), "{problems:#?}");
        let set = loaded.set.expect("loads");
        assert!(set.rules.len() >= 49);
        assert_eq!(
            set.digest,
            crate::ruleset::load_texts(
                PACK.iter()
                    .map(|(p, t)| (PathBuf::from(format!("{BUILTIN}:{p}")), Ok(t.as_bytes().to_vec())))
                    .collect()
            )
            .set
            .expect("loads")
            .digest
        );
    }
}
