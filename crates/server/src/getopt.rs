//! A GNU `getopt_long` work-alike, because CRIU users (zdtm, runc, scripts)
//! rely on its exact quirks: argument permutation, `--name=value`, unique
//! prefixes of long names, clustered short options, and optional arguments that
//! only attach (`-v4`, `-verbosity=0` which is `-v` with "erbosity=0").

use thiserror::Error;

/// Whether an option takes an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// A flag.
    None,
    /// Takes the next word or the attached text.
    Required,
    /// Takes only the attached text (`--x=y`, `-xy`).
    Optional,
}

/// One long option of the table.
#[derive(Debug, Clone, Copy)]
pub struct LongOption<Id: Copy> {
    /// Name without the leading dashes.
    pub name: &'static str,
    /// Argument kind.
    pub arg: ArgKind,
    /// What the caller gets back when it is seen.
    pub id: Id,
}

/// One short option of the table.
#[derive(Debug, Clone, Copy)]
pub struct ShortOption<Id: Copy> {
    /// The letter.
    pub letter: char,
    /// Argument kind.
    pub arg: ArgKind,
    /// What the caller gets back when it is seen.
    pub id: Id,
}

/// A parsed option occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence<Id> {
    /// The option.
    pub id: Id,
    /// Its argument, if any.
    pub arg: Option<String>,
    /// How it was spelled (for error messages), e.g. `--tree` or `-t`.
    pub spelled: String,
}

/// The result of parsing one argument vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<Id> {
    /// Options in the order they appeared.
    pub options: Vec<Occurrence<Id>>,
    /// Non-option words in order (getopt permutes them to the end).
    pub operands: Vec<String>,
}

/// Errors getopt reports (it prints them and the caller exits 1).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum GetoptError {
    /// A `--name` matching no long option.
    #[error("unrecognized option '--{0}'")]
    UnknownLong(String),
    /// A `-x` matching no short option.
    #[error("invalid option -- '{0}'")]
    UnknownShort(char),
    /// A prefix matching several long options.
    #[error("option '--{name}' is ambiguous; possibilities: {candidates}")]
    Ambiguous {
        /// What was written.
        name: String,
        /// The long options it could mean.
        candidates: String,
    },
    /// `--flag=value` for an option without argument.
    #[error("option '--{0}' doesn't allow an argument")]
    UnexpectedArgument(String),
    /// Required argument missing at the end of the vector.
    #[error("option '{0}' requires an argument")]
    MissingArgument(String),
}

/// Parses `args` (without the program name) against the tables.
pub fn parse<Id: Copy>(
    args: &[String],
    shorts: &[ShortOption<Id>],
    longs: &[LongOption<Id>],
) -> Result<Parsed<Id>, GetoptError> {
    let mut parsed = Parsed {
        options: Vec::new(),
        operands: Vec::new(),
    };
    let mut index = 0;
    while index < args.len() {
        let word = &args[index];
        index += 1;
        if word == "--" {
            parsed.operands.extend(args[index..].iter().cloned());
            break;
        }
        if let Some(body) = word.strip_prefix("--") {
            let (name, attached) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (body, None),
            };
            let option = find_long(longs, name)?;
            let arg = match option.arg {
                ArgKind::None => {
                    if attached.is_some() {
                        return Err(GetoptError::UnexpectedArgument(option.name.to_string()));
                    }
                    None
                }
                ArgKind::Optional => attached,
                ArgKind::Required => match attached {
                    Some(value) => Some(value),
                    None => {
                        let Some(next) = args.get(index) else {
                            return Err(GetoptError::MissingArgument(format!("--{}", option.name)));
                        };
                        index += 1;
                        Some(next.clone())
                    }
                },
            };
            parsed.options.push(Occurrence {
                id: option.id,
                arg,
                spelled: format!("--{}", option.name),
            });
            continue;
        }
        if word.len() > 1 && word.starts_with('-') {
            let letters: Vec<char> = word[1..].chars().collect();
            let mut pos = 0;
            while pos < letters.len() {
                let letter = letters[pos];
                pos += 1;
                let Some(option) = shorts.iter().find(|s| s.letter == letter) else {
                    return Err(GetoptError::UnknownShort(letter));
                };
                let rest: String = letters[pos..].iter().collect();
                let arg = match option.arg {
                    ArgKind::None => None,
                    ArgKind::Optional => {
                        pos = letters.len();
                        (!rest.is_empty()).then_some(rest)
                    }
                    ArgKind::Required => {
                        pos = letters.len();
                        if rest.is_empty() {
                            let Some(next) = args.get(index) else {
                                return Err(GetoptError::MissingArgument(format!("-{letter}")));
                            };
                            index += 1;
                            Some(next.clone())
                        } else {
                            Some(rest)
                        }
                    }
                };
                parsed.options.push(Occurrence {
                    id: option.id,
                    arg,
                    spelled: format!("-{letter}"),
                });
            }
            continue;
        }
        parsed.operands.push(word.clone());
    }
    Ok(parsed)
}

/// Exact match first, then a unique prefix (GNU accepts abbreviations).
fn find_long<'t, Id: Copy>(
    longs: &'t [LongOption<Id>],
    name: &str,
) -> Result<&'t LongOption<Id>, GetoptError> {
    if let Some(exact) = longs.iter().find(|l| l.name == name) {
        return Ok(exact);
    }
    let candidates: Vec<&LongOption<Id>> = longs
        .iter()
        .filter(|l| !name.is_empty() && l.name.starts_with(name))
        .collect();
    match candidates.as_slice() {
        [] => Err(GetoptError::UnknownLong(name.to_string())),
        [only] => Ok(only),
        many => Err(GetoptError::Ambiguous {
            name: name.to_string(),
            candidates: many
                .iter()
                .map(|l| format!("'--{}'", l.name))
                .collect::<Vec<_>>()
                .join(" "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Id {
        Tree,
        Verbosity,
        Detach,
        Track,
        TrackAll,
    }

    const SHORTS: &[ShortOption<Id>] = &[
        ShortOption {
            letter: 't',
            arg: ArgKind::Required,
            id: Id::Tree,
        },
        ShortOption {
            letter: 'v',
            arg: ArgKind::Optional,
            id: Id::Verbosity,
        },
        ShortOption {
            letter: 'd',
            arg: ArgKind::None,
            id: Id::Detach,
        },
    ];
    const LONGS: &[LongOption<Id>] = &[
        LongOption {
            name: "tree",
            arg: ArgKind::Required,
            id: Id::Tree,
        },
        LongOption {
            name: "verbosity",
            arg: ArgKind::Optional,
            id: Id::Verbosity,
        },
        LongOption {
            name: "track-mem",
            arg: ArgKind::None,
            id: Id::Track,
        },
        LongOption {
            name: "track-all",
            arg: ArgKind::None,
            id: Id::TrackAll,
        },
    ];

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn parse_line(line: &str) -> Result<Parsed<Id>, GetoptError> {
        parse(&words(line), SHORTS, LONGS)
    }

    #[test]
    fn verbosity_quirk_attaches_the_rest_of_the_word() {
        let parsed = parse_line("check -verbosity=0").unwrap();
        assert_eq!(parsed.options[0].id, Id::Verbosity);
        assert_eq!(parsed.options[0].arg.as_deref(), Some("erbosity=0"));
        assert_eq!(parsed.operands, vec!["check"]);
    }

    #[test]
    fn optional_argument_never_takes_the_next_word() {
        let parsed = parse_line("-v 4 --verbosity 3").unwrap();
        assert_eq!(parsed.options[0].arg, None);
        assert_eq!(parsed.options[1].arg, None);
        assert_eq!(parsed.operands, vec!["4", "3"]);
    }

    #[test]
    fn required_argument_attached_or_next_word() {
        let parsed = parse_line("-t12 -t 13 --tree=14 --tree 15 -dt16").unwrap();
        let args: Vec<_> = parsed
            .options
            .iter()
            .filter(|o| o.id == Id::Tree)
            .map(|o| o.arg.clone().unwrap())
            .collect();
        assert_eq!(args, vec!["12", "13", "14", "15", "16"]);
        assert!(parsed.options.iter().any(|o| o.id == Id::Detach));
    }

    #[test]
    fn unique_prefix_is_accepted_and_ambiguous_is_not() {
        let parsed = parse_line("--verb=4 --track-m").unwrap();
        assert_eq!(parsed.options[0].id, Id::Verbosity);
        assert_eq!(parsed.options[1].id, Id::Track);
        assert!(matches!(
            parse_line("--track"),
            Err(GetoptError::Ambiguous { .. })
        ));
    }

    #[test]
    fn errors_name_the_option() {
        assert_eq!(
            parse_line("--bogus"),
            Err(GetoptError::UnknownLong("bogus".into()))
        );
        assert_eq!(parse_line("-q"), Err(GetoptError::UnknownShort('q')));
        assert_eq!(
            parse_line("--tree"),
            Err(GetoptError::MissingArgument("--tree".into()))
        );
        assert_eq!(
            parse_line("--track-mem=1"),
            Err(GetoptError::UnexpectedArgument("track-mem".into()))
        );
    }

    #[test]
    fn double_dash_ends_options() {
        let parsed = parse_line("restore -- -t 5").unwrap();
        assert!(parsed.options.is_empty());
        assert_eq!(parsed.operands, vec!["restore", "-t", "5"]);
    }
}
