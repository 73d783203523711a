//! The `-c/--config` TOML file (docs/trace-schema.md, "Config file").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub trace: Option<PathBuf>,
    #[serde(default)]
    pub all_libs: bool,
    #[serde(default)]
    pub strict: bool,
    pub toolkit: Option<PathBuf>,
    pub locked: Option<PathBuf>,
    #[serde(default)]
    pub pins: BTreeMap<String, PathBuf>,
}

/// Reads `path`; relative paths inside it are relative to the file's directory.
pub fn load(path: &Path) -> Result<Config, Error> {
    let text = crate::input::read_to_string(path, crate::input::SMALL_FILE_LIMIT)
        .map_err(|e| Error::Config { path: path.to_path_buf(), message: e.to_string() })?;
    let mut config = parse(&text).map_err(|message| Error::Config { path: path.to_path_buf(), message })?;
    // Expanded before anchoring: the config's own directory may hold a `%`.
    config.trace = config.trace.as_deref().map(crate::trace_file::expand_here).transpose()?;
    let base = path.parent().unwrap_or(Path::new("."));
    let anchor = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    config.trace.as_mut().map(anchor);
    config.toolkit.as_mut().map(anchor);
    config.locked.as_mut().map(anchor);
    config.pins.values_mut().for_each(anchor);
    Ok(config)
}

/// toml's messages already name the line and column and show the line.
pub(crate) fn parse(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| toml_message(&e))
}

/// A TOML parse error as one message, its continuation lines indented under
/// the file's name (config and lock files alike).
pub(crate) fn toml_message(e: &toml::de::Error) -> String {
    e.to_string().trim_end().replace('\n', "\n  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses() {
        let c = parse("trace = \"t.jsonl\"\nall_libs = true\nstrict = true\ntoolkit = \"/usr/local/cuda\"\n[pins]\n\"libcudart.so.12\" = \"/x/libcudart.so.12\"\n").unwrap();
        assert!(c.all_libs && c.strict);
        assert_eq!(c.pins["libcudart.so.12"], PathBuf::from("/x/libcudart.so.12"));
    }

    #[test]
    fn an_unknown_key_is_named_with_line_and_column() {
        let e = parse("strict = true\nstirct = false\n").unwrap_err();
        assert!(e.contains("stirct"), "{e}");
        assert!(e.contains("line 2, column 1"), "{e}");
    }

    #[test]
    fn a_bad_value_is_an_error() {
        let e = parse("strict = \"yes\"\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }
}
