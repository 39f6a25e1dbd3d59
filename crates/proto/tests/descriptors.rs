//! Our descriptors against the ones pycriu (Debian's CRIU 3.17) ships, and
//! the shape of `FILE_DESCRIPTOR_SET` that crit relies on.
//!
//! CRIU never renumbers or retypes a field, so every field pycriu knows must
//! exist here with the same number, type, label and message/enum type. 3.17
//! is older: fields, messages and enum values only we have are listed in a
//! report (`$CARGO_TARGET_TMPDIR/proto-vs-pycriu-3.17.txt`), as are the few
//! fields CRIU renamed since (wire-identical, allowed explicitly below).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use criu_proto::{names, FILE_DESCRIPTOR_SET};
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, Value};
use serde_json::Value as Json;

const PYTHON: &str = "/usr/bin/python3";

/// Fields renamed by CRIU after 3.17, same number and type:
/// (message, number, name in 3.17, name now).
const KNOWN_RENAMES: &[(&str, u32, &str, &str)] = &[
    // 4.0 widened the page count: the old 32-bit field kept its number under
    // a new name and a 64-bit `nr_pages` came in as field 5.
    ("pagemap_entry", 2, "nr_pages", "compat_nr_pages"),
];

fn pool() -> DescriptorPool {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("FILE_DESCRIPTOR_SET decodes")
}

fn pycriu_descriptors() -> Json {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/py/pycriu_descriptors.py"
    );
    let output = Command::new(PYTHON)
        .arg(script)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {PYTHON} {script}: {err}"));
    assert!(
        output.status.success(),
        "{script} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("python prints JSON")
}

/// The `(criu)` options of a field as `name -> value` strings, shaped like the
/// python side prints them (booleans lower-case).
fn criu_options(pool: &DescriptorPool, field: &FieldDescriptor) -> BTreeMap<String, String> {
    let extension = pool
        .get_extension_by_name(names::OPTIONS_EXTENSION)
        .expect("extension (criu) in the pool");
    let options: DynamicMessage = field.options();
    if !options.has_extension(&extension) {
        return BTreeMap::new();
    }
    match options.get_extension(&extension).as_ref() {
        Value::Message(criu) => criu
            .fields()
            .map(|(option, value)| {
                let text = match value {
                    Value::Bool(flag) => flag.to_string(),
                    Value::String(text) => text.clone(),
                    other => panic!("unexpected option value {other:?}"),
                };
                (option.name().to_owned(), text)
            })
            .collect(),
        other => panic!("(criu) is not a message: {other:?}"),
    }
}

fn json_options(field: &Json) -> BTreeMap<String, String> {
    field["options"]
        .as_object()
        .expect("options object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("option string").to_owned()))
        .collect()
}

#[test]
fn every_pycriu_field_has_the_same_number_type_and_label_here() {
    let pool = pool();
    let theirs = pycriu_descriptors();
    let mut failures = Vec::new();
    let mut report = String::from(
        "criu-rs protos vs pycriu 3.17 (Debian): differences\n\
         ====================================================\n",
    );

    let their_messages = theirs["messages"].as_object().expect("messages");
    assert!(their_messages.len() > 100, "pycriu lists too few messages");
    for (message_name, message) in their_messages {
        let Some(ours) = pool.get_message_by_name(message_name) else {
            failures.push(format!("message {message_name} missing"));
            continue;
        };
        let mut their_numbers = Vec::new();
        for field in message["fields"].as_array().expect("fields") {
            let name = field["name"].as_str().expect("name");
            let number = u32::try_from(field["number"].as_u64().expect("number")).expect("u32");
            their_numbers.push(number);
            let Some(our_field) = ours.get_field(number) else {
                failures.push(format!("{message_name}.{name} = {number} missing"));
                continue;
            };
            let proto = our_field.field_descriptor_proto();
            let our_type_name = proto.type_name().trim_start_matches('.');
            let same_shape = i64::from(proto.r#type.unwrap_or_default()) == field["type"]
                && i64::from(proto.label.unwrap_or_default()) == field["label"]
                && our_type_name == field["type_name"].as_str().expect("type_name");
            if !same_shape {
                failures.push(format!(
                    "{message_name}.{name} = {number}: type/label/type_name differ \
                     (ours {proto:?}, theirs {field})"
                ));
            }
            if our_field.name() != name {
                let allowed = KNOWN_RENAMES.contains(&(
                    message_name.as_str(),
                    number,
                    name,
                    our_field.name(),
                ));
                let _ = writeln!(
                    report,
                    "renamed: {message_name} field {number}: 3.17 `{name}`, now `{}`{}",
                    our_field.name(),
                    if allowed { "" } else { "  <-- UNEXPECTED" }
                );
                if !allowed {
                    failures.push(format!(
                        "{message_name}.{name} = {number} renamed to {}",
                        our_field.name()
                    ));
                }
            }
            let (our_options, their_options) =
                (criu_options(&pool, &our_field), json_options(field));
            if our_options != their_options {
                let _ = writeln!(
                    report,
                    "options: {message_name}.{name}: 3.17 {their_options:?}, now {our_options:?}"
                );
                // An option 3.17 had that we dropped or changed would make
                // crit print the field differently: not allowed.
                for (option, value) in &their_options {
                    if our_options.get(option) != Some(value) {
                        failures.push(format!(
                            "{message_name}.{name}: option {option}={value} lost"
                        ));
                    }
                }
            }
        }
        for our_field in ours.fields() {
            if !their_numbers.contains(&our_field.number()) {
                let _ = writeln!(
                    report,
                    "newer field: {message_name}.{} = {}",
                    our_field.name(),
                    our_field.number()
                );
            }
        }
    }
    for message in pool.all_messages() {
        let name = message.full_name();
        if !name.starts_with("google.") && !their_messages.contains_key(name) {
            let _ = writeln!(
                report,
                "newer message: {name} ({})",
                message.parent_file().name()
            );
        }
    }

    let their_enums = theirs["enums"].as_object().expect("enums");
    for (enum_name, enumeration) in their_enums {
        let Some(ours) = pool.get_enum_by_name(enum_name) else {
            failures.push(format!("enum {enum_name} missing"));
            continue;
        };
        let values = enumeration["values"].as_object().expect("values");
        for (value_name, number) in values {
            match ours.get_value_by_name(value_name) {
                Some(value) if Some(i64::from(value.number())) == number.as_i64() => {}
                other => failures.push(format!(
                    "enum {enum_name}.{value_name} = {number}: ours {:?}",
                    other.map(|v| v.number())
                )),
            }
        }
        for value in ours.values() {
            if !values.contains_key(value.name()) {
                let _ = writeln!(
                    report,
                    "newer enum value: {enum_name}.{} = {}",
                    value.name(),
                    value.number()
                );
            }
        }
    }

    let report_path = concat!(env!("CARGO_TARGET_TMPDIR"), "/proto-vs-pycriu-3.17.txt");
    std::fs::write(report_path, &report).expect("write the report");
    println!("{report}\n(report written to {report_path})");
    assert!(
        failures.is_empty(),
        "incompatible with pycriu 3.17:\n{}",
        failures.join("\n")
    );
}

#[test]
fn descriptor_set_carries_criu_field_options() {
    let pool = pool();
    let extension = pool
        .get_extension_by_name(names::OPTIONS_EXTENSION)
        .expect("extension (criu)");
    assert_eq!(extension.number(), names::OPTIONS_EXTENSION_NUMBER);
    assert_eq!(
        extension.containing_message().full_name(),
        "google.protobuf.FieldOptions"
    );
    let option = |message: &str, field: &str| {
        let field = pool
            .get_message_by_name(message)
            .unwrap_or_else(|| panic!("message {message}"))
            .get_field_by_name(field)
            .unwrap_or_else(|| panic!("field {message}.{field}"));
        criu_options(&pool, &field)
    };
    let set = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert_eq!(option("vma_entry", "prot"), set(&[("flags", "mmap.prot")]));
    assert_eq!(option("vma_entry", "start"), set(&[("hex", "true")]));
    assert_eq!(option("mm_entry", "mm_brk"), set(&[("hex", "true")]));
    assert_eq!(
        option("pagemap_entry", "flags"),
        set(&[("flags", "pmap.flags")])
    );
    assert_eq!(
        option("task_core_entry", "task_state"),
        set(&[("dict", "gen")])
    );
    assert_eq!(
        option("ghost_file_entry", "rdev"),
        set(&[("dev", "true"), ("odev", "true")])
    );
    assert_eq!(
        option("inet_sk_entry", "src_addr"),
        set(&[("ipadd", "true")])
    );
    assert_eq!(
        option("unix_sk_entry", "name"),
        set(&[("conv", "unix_name")])
    );
    assert_eq!(option("thread_info_x86", "gpregs"), set(&[("hex", "true")]));
    assert!(option("vma_entry", "pgoff").is_empty());
}

#[test]
fn no_repeated_scalar_is_packed() {
    let pool = pool();
    let mut repeated_scalars = 0;
    for message in pool.all_messages() {
        if message.full_name().starts_with("google.") {
            continue;
        }
        assert_eq!(
            message.parent_file().syntax(),
            prost_reflect::Syntax::Proto2
        );
        for field in message.fields() {
            if field.is_list() && !matches!(field.kind(), prost_reflect::Kind::Message(_)) {
                repeated_scalars += 1;
                assert!(!field.is_packed(), "{} would be packed", field.full_name());
            }
        }
    }
    assert!(
        repeated_scalars > 50,
        "only {repeated_scalars} repeated scalars seen"
    );
}

#[test]
fn names_module_lists_exactly_the_pool() {
    let pool = pool();
    let mut in_pool: Vec<String> = pool
        .all_messages()
        .filter(|m| {
            let file = m.parent_file();
            !file.name().starts_with("google/") && file.name() != names::OPTIONS_FILE
        })
        .map(|m| m.full_name().to_owned())
        .collect();
    in_pool.sort();
    let mut listed: Vec<String> = names::MESSAGES.iter().map(|s| (*s).to_owned()).collect();
    listed.sort();
    assert_eq!(listed, in_pool);

    let mut enums_in_pool: Vec<String> = pool
        .all_enums()
        .filter(|e| !e.parent_file().name().starts_with("google/"))
        .map(|e| e.full_name().to_owned())
        .collect();
    enums_in_pool.sort();
    let mut enums_listed: Vec<String> = names::ENUMS.iter().map(|s| (*s).to_owned()).collect();
    enums_listed.sort();
    assert_eq!(enums_listed, enums_in_pool);

    assert_eq!(
        names::FILES.len(),
        75,
        "every CRIU images/*.proto but opts.proto"
    );
    assert!(pool.get_file_by_name(names::OPTIONS_FILE).is_some());
    for file in names::FILES {
        assert!(
            pool.get_file_by_name(file).is_some(),
            "{file} not in the pool"
        );
    }
}

#[test]
fn prost_names_resolve_in_the_pool() {
    use prost::Name;
    let pool = pool();
    for full_name in [
        criu_proto::CriuReq::full_name(),
        criu_proto::CoreEntry::full_name(),
        criu_proto::InventoryEntry::full_name(),
        criu_proto::UserX86XsaveEntry::full_name(),
        criu_proto::FileEntry::full_name(),
    ] {
        assert!(
            pool.get_message_by_name(&full_name).is_some(),
            "{full_name} not in the pool"
        );
    }
    assert_eq!(criu_proto::CriuReq::full_name(), "criu_req");
}
