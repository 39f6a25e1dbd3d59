//! CRIU configuration files: one option per line, without the leading dashes,
//! optionally followed by one argument (which may be double-quoted), `#`
//! starting a comment. Files are turned into option words and fed to the same
//! parser as the command line, in CRIU's precedence order.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::options::{apply_words, Options, OptionsError};

/// System-wide default configuration.
pub const GLOBAL_CONFIG: &str = "/etc/criu/default.conf";
/// Per-user default configuration, relative to `$HOME`.
pub const USER_CONFIG: &str = ".criu/default.conf";
/// Environment variable naming one more configuration file.
pub const CONFIG_ENV: &str = "CRIU_CONFIG_FILE";

/// Errors reading or applying a configuration file.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A line CRIU's config syntax does not allow.
    #[error(
        "{path}:{line}: Unsupported configuration file format. Please consult man page criu(8)"
    )]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// An option in the file is unknown or has a bad value.
    #[error("{path}: {source}")]
    Option {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: OptionsError,
    },
    /// The file exists but cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Turns the text of a config file into option words (`--name`, `value`).
pub fn words_of(text: &str, path: &Path) -> Result<Vec<String>, ConfigError> {
    let mut words = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let syntax = || ConfigError::Syntax {
            path: path.to_path_buf(),
            line: index + 1,
        };
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find([' ', '\t']) {
            Some(split) => (&line[..split], line[split + 1..].trim_start()),
            None => (line, ""),
        };
        words.push(format!("--{name}"));
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if let Some(quoted) = rest.strip_prefix('"') {
            // Up to the next unescaped quote; \" stands for a quote.
            let mut value = String::new();
            let mut chars = quoted.char_indices().peekable();
            let mut end = None;
            while let Some((pos, ch)) = chars.next() {
                match ch {
                    '\\' if matches!(chars.peek(), Some((_, '"'))) => {
                        value.push('"');
                        chars.next();
                    }
                    '"' => {
                        end = Some(pos + 1);
                        break;
                    }
                    other => value.push(other),
                }
            }
            let end = end.ok_or_else(syntax)?;
            let tail = quoted[end..].trim_start();
            if !tail.is_empty() && !tail.starts_with('#') {
                return Err(syntax());
            }
            words.push(value);
        } else {
            let value = match rest.find('#') {
                Some(comment) => rest[..comment].trim_end(),
                None => rest.trim_end(),
            };
            if value.contains([' ', '\t']) {
                return Err(syntax());
            }
            if !value.is_empty() {
                words.push(value.to_string());
            }
        }
    }
    Ok(words)
}

/// Applies one config file onto `options`. A missing file is not an error
/// (CRIU silently skips it).
pub fn apply_file(options: &mut Options, path: &Path) -> Result<bool, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let words = words_of(&text, path)?;
    tracing::debug!("Parsing config file {}", path.display());
    apply_words(options, &words).map_err(|source| ConfigError::Option {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(true)
}

/// The default config files in precedence order (low to high): global, user,
/// then `$CRIU_CONFIG_FILE`. The first two are skipped with
/// `--no-default-config` (or `--config`); the env file never is.
pub fn default_files(no_default_config: bool) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if !no_default_config {
        files.push(PathBuf::from(GLOBAL_CONFIG));
        if let Some(home) = std::env::var_os("HOME") {
            files.push(PathBuf::from(home).join(USER_CONFIG));
        }
    }
    if let Some(env_file) = std::env::var_os(CONFIG_ENV) {
        files.push(PathBuf::from(env_file));
    }
    files
}

/// Applies the default config files (see [`default_files`]).
pub fn apply_defaults(options: &mut Options, no_default_config: bool) -> Result<(), ConfigError> {
    for file in default_files(no_default_config) {
        apply_file(options, &file)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<String>, ConfigError> {
        words_of(text, Path::new("test.conf"))
    }

    #[test]
    fn options_arguments_and_comments() {
        let words = parse(
            "# comment\n\n  tcp-established\nverbosity 4 # trailing\nlog-file  \"my log.txt\"\n\
             lsm-profile \"a\\\"b\"\n",
        )
        .unwrap();
        assert_eq!(
            words,
            vec![
                "--tcp-established",
                "--verbosity",
                "4",
                "--log-file",
                "my log.txt",
                "--lsm-profile",
                "a\"b"
            ]
        );
    }

    #[test]
    fn two_arguments_or_unterminated_quote_is_a_syntax_error() {
        assert!(matches!(
            parse("log-file a b\n"),
            Err(ConfigError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            parse("ok\nlog-file \"abc\n"),
            Err(ConfigError::Syntax { line: 2, .. })
        ));
    }

    #[test]
    fn unknown_option_in_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.conf");
        std::fs::write(&path, "no-such-option\n").unwrap();
        let mut options = Options::default();
        let error = apply_file(&mut options, &path).unwrap_err();
        assert!(error.to_string().contains("no-such-option"), "{error}");
        std::fs::write(&path, "log-file from-conf.log\nverbosity=4\n").unwrap();
        assert!(apply_file(&mut options, &path).unwrap());
        assert_eq!(options.log_file.as_deref(), Some("from-conf.log"));
        assert_eq!(options.log_level, 4);
        // As in CRIU, "verbosity 4" splits into "--verbosity" "4", and an
        // optional argument never takes the next word: the level goes up one.
        let mut options = Options::default();
        std::fs::write(&path, "verbosity 4\n").unwrap();
        apply_file(&mut options, &path).unwrap();
        assert_eq!(options.log_level, 3);
        assert!(!apply_file(&mut options, &dir.path().join("absent")).unwrap());
    }
}
