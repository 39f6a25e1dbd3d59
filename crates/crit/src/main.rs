//! `crit`: the command line of CRIU's image tool.
//!
//! ```text
//! crit decode [-i IN] [-o OUT] [--pretty]   image -> JSON (stdin/stdout by default)
//! crit encode [-i IN] [-o OUT]              JSON -> image
//! crit show IN [--nopl]                     decode --pretty to stdout
//! crit info IN                              magic and entry count
//! crit x DIR ps|fds|mems|rss                explore an images directory
//! ```
#![deny(unsafe_code)]

use std::io::{Read, Write};
use std::process::ExitCode;

use criu_crit::{
    decode_image, encode_image, explore, image_info, CritError, DecodeOptions, Explorer, Schema,
};

const USAGE: &str = "usage: crit [-h] [--version] {decode,encode,info,x,show} ...";

#[derive(Debug, Default)]
struct Args {
    input: Option<String>,
    output: Option<String>,
    pretty: bool,
    nopl: bool,
    positional: Vec<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("argument {name}: expected one argument"))
        };
        match arg.as_str() {
            "-i" | "--in" => parsed.input = Some(value("-i/--in")?),
            "-o" | "--out" => parsed.output = Some(value("-o/--out")?),
            "--pretty" => parsed.pretty = true,
            "--nopl" => parsed.nopl = true,
            other if other.starts_with("--in=") => {
                parsed.input = Some(other["--in=".len()..].to_owned())
            }
            other if other.starts_with("--out=") => {
                parsed.output = Some(other["--out=".len()..].to_owned())
            }
            other if other.starts_with('-') && other != "-" => {
                return Err(format!("unrecognized arguments: {other}"))
            }
            other => parsed.positional.push(other.to_owned()),
        }
    }
    Ok(parsed)
}

fn read_input(path: Option<&str>) -> Result<(String, Vec<u8>), CritError> {
    match path {
        Some(path) => std::fs::read(path)
            .map(|bytes| (path.to_owned(), bytes))
            .map_err(|source| CritError::Io {
                path: path.to_owned(),
                source,
            }),
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|source| CritError::Io {
                    path: "<stdin>".into(),
                    source,
                })?;
            Ok(("<stdin>".to_owned(), bytes))
        }
    }
}

fn write_output(path: Option<&str>, data: &[u8]) -> Result<(), CritError> {
    match path {
        Some(path) => std::fs::write(path, data).map_err(|source| CritError::Io {
            path: path.to_owned(),
            source,
        }),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(data)
                .and_then(|()| stdout.flush())
                .map_err(|source| CritError::Io {
                    path: "<stdout>".into(),
                    source,
                })
        }
    }
}

fn decode(args: &Args, pretty: bool, no_payload: bool) -> Result<(), CritError> {
    let schema = Schema::load()?;
    let (name, bytes) = read_input(args.input.as_deref())?;
    let image = decode_image(&schema, &name, bytes, DecodeOptions { pretty, no_payload })?;
    let mut text = image.to_python_string(pretty.then_some(4));
    if args.output.is_none() {
        text.push('\n');
    }
    write_output(args.output.as_deref(), text.as_bytes())
}

fn encode(args: &Args) -> Result<(), CritError> {
    let schema = Schema::load()?;
    let (_, bytes) = read_input(args.input.as_deref())?;
    let json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| CritError::NotJson(e.to_string()))?;
    let image = encode_image(&schema, &json)?;
    write_output(args.output.as_deref(), &image)
}

fn run(argv: &[String]) -> Result<ExitCode, CritError> {
    let Some(command) = argv.first() else {
        eprintln!("{USAGE}\ncrit: error: too few arguments");
        return Ok(ExitCode::from(1));
    };
    if command == "--version" {
        println!("{}", env!("CARGO_PKG_VERSION"));
        return Ok(ExitCode::SUCCESS);
    }
    if command == "-h" || command == "--help" {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let args = match parse(&argv[1..]) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{USAGE}\ncrit: error: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let usage_error = |message: &str| {
        eprintln!("{USAGE}\ncrit {command}: error: {message}");
        Ok(ExitCode::from(2))
    };
    match command.as_str() {
        "decode" => decode(&args, args.pretty, false)?,
        "encode" => encode(&args)?,
        "show" => {
            let [input] = args.positional.as_slice() else {
                return usage_error("the following arguments are required: in");
            };
            let show = Args {
                input: Some(input.clone()),
                output: None,
                ..Args::default()
            };
            decode(&show, true, args.nopl)?;
        }
        "info" => {
            let [input] = args.positional.as_slice() else {
                return usage_error("the following arguments are required: in");
            };
            let schema = Schema::load()?;
            let (name, bytes) = read_input(Some(input))?;
            let info = image_info(&schema, &name, bytes)?;
            let text = format!("{}\n", info.to_python_string(Some(4)));
            write_output(None, text.as_bytes())?;
        }
        "x" => {
            let [dir, what] = args.positional.as_slice() else {
                return usage_error("the following arguments are required: dir, what");
            };
            let Some(explorer) = Explorer::from_name(what) else {
                return usage_error(&format!(
                    "argument what: invalid choice: '{what}' (choose from 'ps', 'fds', 'mems', 'rss')"
                ));
            };
            let schema = Schema::load()?;
            let text = explore(&schema, std::path::Path::new(dir), explorer)?;
            write_output(None, text.as_bytes())?;
        }
        other => {
            eprintln!("{USAGE}\ncrit: error: argument command: invalid choice: '{other}'");
            return Ok(ExitCode::from(2));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(1)
        }
    }
}
