//! Protobuf message <-> JSON, the way pycriu's `pb2dict`/`dict2pb` do it.
//!
//! Fields appear in field-number order (protobuf `ListFields`); only fields
//! that are set are shown. Enums print by name, bytes as MIME base64. With
//! `pretty`, the `(criu)` field options change how integers look: `hex`
//! (`"0x1f"`, inherited by nested messages), `flags` (`"PROT_READ | PROT_WRITE"`),
//! `dev` (`"major:minor"`), `dict` (names for socket families, task states) and
//! `ipadd` (dotted or IPv6 addresses). Encoding accepts all those spellings back.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value,
};

use crate::codec::{decode_base64_lenient, decode_quopri, encode_base64_lines, encode_quopri};
use crate::error::CritError;
use crate::json::Json;

/// The `(criu)` options of one field (extension 1018 of `FieldOptions`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CriuFieldOptions {
    /// Show as hex.
    pub hex: bool,
    /// IPv4/IPv6 address in network-order u32 words.
    pub ipadd: bool,
    /// Name of a flag table.
    pub flags: Option<String>,
    /// Device number.
    pub dev: bool,
    /// ... in the old (glibc `makedev`) encoding.
    pub odev: bool,
    /// Name of a value dictionary.
    pub dict: Option<String>,
    /// Custom bytes conversion (`unix_name`: quoted-printable).
    pub conv: Option<String>,
}

/// The image message descriptors with their crit display options.
#[derive(Debug)]
pub struct Schema {
    pool: DescriptorPool,
    options: HashMap<String, CriuFieldOptions>,
}

impl Schema {
    /// Loads the descriptors compiled into criu-proto.
    pub fn load() -> Result<Schema, CritError> {
        let pool = DescriptorPool::decode(criu_proto::FILE_DESCRIPTOR_SET)
            .map_err(|e| CritError::Descriptors(e.to_string()))?;
        let mut options = HashMap::new();
        if let Some(ext) = pool.get_extension_by_name("criu") {
            for message in pool.all_messages() {
                for field in message.fields() {
                    let field_options = field.options();
                    if !field_options.has_extension(&ext) {
                        continue;
                    }
                    if let Value::Message(opts) = field_options.get_extension(&ext).as_ref() {
                        let flag = |name: &str| {
                            opts.get_field_by_name(name)
                                .and_then(|v| v.as_bool())
                                .unwrap_or(false)
                        };
                        let text = |name: &str| {
                            opts.has_field_by_name(name)
                                .then(|| opts.get_field_by_name(name))
                                .flatten()
                                .and_then(|v| v.as_str().map(str::to_owned))
                        };
                        let parsed = CriuFieldOptions {
                            hex: flag("hex"),
                            ipadd: flag("ipadd"),
                            flags: text("flags"),
                            dev: flag("dev"),
                            odev: flag("odev"),
                            dict: text("dict"),
                            conv: text("conv"),
                        };
                        if parsed != CriuFieldOptions::default() {
                            options.insert(field.full_name().to_owned(), parsed);
                        }
                    }
                }
            }
        }
        if options.is_empty() {
            return Err(CritError::Descriptors(
                "no (criu) field options found".into(),
            ));
        }
        Ok(Schema { pool, options })
    }

    /// The descriptor of a message (`"core_entry"`).
    pub fn message(&self, name: &str) -> Result<MessageDescriptor, CritError> {
        self.pool
            .get_message_by_name(name)
            .ok_or_else(|| CritError::NoMessage(name.to_owned()))
    }

    /// The `(criu)` options of a field.
    pub fn field_options(&self, field: &FieldDescriptor) -> Option<&CriuFieldOptions> {
        self.options.get(field.full_name())
    }

    /// Decodes protobuf bytes as `desc`. Like Python protobuf's parser (and so
    /// crit), missing required fields are tolerated here; encoding checks them.
    pub fn decode(&self, desc: &MessageDescriptor, bytes: &[u8]) -> Result<DynamicMessage, String> {
        DynamicMessage::decode(desc.clone(), bytes).map_err(|e| e.to_string())
    }

    /// `pb2dict(message, pretty)`.
    pub fn to_json(&self, message: &DynamicMessage, pretty: bool) -> Json {
        self.message_to_json(message, pretty, false)
    }

    fn message_to_json(&self, message: &DynamicMessage, pretty: bool, is_hex: bool) -> Json {
        let mut fields: Vec<FieldDescriptor> = message.descriptor().fields().collect();
        fields.sort_by_key(|f| f.number());
        let mut out = Json::object();
        for field in fields {
            if !message.has_field(&field) {
                continue;
            }
            let options = self.field_options(&field);
            let value = message.get_field(&field);
            let rendered = match value.as_ref() {
                Value::List(items) => {
                    if pretty && options.is_some_and(|o| o.ipadd) {
                        Some(Json::List(vec![Json::Str(ip_to_string(items))]))
                    } else {
                        let converted: Vec<Json> = items
                            .iter()
                            .filter_map(|v| self.value_to_json(&field, v, pretty, is_hex))
                            .collect();
                        (!converted.is_empty()).then_some(Json::List(converted))
                    }
                }
                single => self.value_to_json(&field, single, pretty, is_hex),
            };
            if let Some(rendered) = rendered {
                out.push(field.name(), rendered);
            }
        }
        out
    }

    /// One value; `None` for enum numbers the enum does not define (protobuf
    /// keeps those as unknown fields, so crit never shows them).
    fn value_to_json(
        &self,
        field: &FieldDescriptor,
        value: &Value,
        pretty: bool,
        is_hex: bool,
    ) -> Option<Json> {
        let options = self.field_options(field);
        let is_hex = is_hex || options.is_some_and(|o| o.hex);
        let integer = |n: i128| -> Json {
            if pretty {
                if let Some(text) = pretty_integer(n, is_hex, field, options) {
                    return text;
                }
            }
            if n < 0 {
                Json::Int(n as i64)
            } else {
                Json::UInt(n as u64)
            }
        };
        Some(match value {
            Value::Message(sub) => self.message_to_json(sub, pretty, is_hex),
            Value::Bytes(bytes) => match options.and_then(|o| o.conv.as_deref()) {
                Some("unix_name") => Json::Str(encode_quopri(bytes)),
                _ => Json::Str(encode_base64_lines(bytes)),
            },
            Value::EnumNumber(number) => match field.kind() {
                Kind::Enum(e) => Json::Str(e.get_value(*number)?.name().to_owned()),
                _ => integer(i128::from(*number)),
            },
            Value::Bool(b) => Json::Bool(*b),
            Value::String(s) => Json::Str(s.clone()),
            Value::I32(n) => integer(i128::from(*n)),
            Value::I64(n) => integer(i128::from(*n)),
            Value::U32(n) => integer(i128::from(*n)),
            Value::U64(n) => integer(i128::from(*n)),
            // CRIU's protos have no floating point fields; show them plainly if any appear.
            Value::F32(x) => Json::Str(x.to_string()),
            Value::F64(x) => Json::Str(x.to_string()),
            Value::List(_) | Value::Map(_) => return None,
        })
    }

    /// `dict2pb(d, message)`.
    pub fn from_json(
        &self,
        desc: &MessageDescriptor,
        value: &serde_json::Value,
        path: &str,
    ) -> Result<DynamicMessage, CritError> {
        let object = value
            .as_object()
            .ok_or_else(|| json_error(path, "expected an object"))?;
        let mut message = DynamicMessage::new(desc.clone());
        for field in desc.fields() {
            let Some(item) = object.get(field.name()) else {
                continue;
            };
            let field_path = if path.is_empty() {
                field.name().to_owned()
            } else {
                format!("{path}.{}", field.name())
            };
            let options = self.field_options(&field);
            if field.is_list() {
                let items = item
                    .as_array()
                    .ok_or_else(|| json_error(&field_path, "expected a list"))?;
                let mut values = Vec::with_capacity(items.len());
                if options.is_some_and(|o| o.ipadd) && items.first().is_some_and(|v| v.is_string())
                {
                    let text = items[0].as_str().unwrap_or_default();
                    values = ip_from_string(text)
                        .ok_or_else(|| json_error(&field_path, "not an IP address"))?;
                } else {
                    for (i, v) in items.iter().enumerate() {
                        let item_path = format!("{field_path}[{i}]");
                        values.push(match field.kind() {
                            Kind::Message(sub) => {
                                Value::Message(self.from_json(&sub, v, &item_path)?)
                            }
                            _ => self.value_from_json(&field, v, &item_path)?,
                        });
                    }
                }
                message.set_field(&field, Value::List(values));
            } else {
                let converted = match field.kind() {
                    Kind::Message(sub) => {
                        Value::Message(self.from_json(&sub, item, &field_path)?)
                    }
                    _ => self.value_from_json(&field, item, &field_path)?,
                };
                message.set_field(&field, converted);
            }
        }
        Ok(message)
    }

    fn value_from_json(
        &self,
        field: &FieldDescriptor,
        value: &serde_json::Value,
        path: &str,
    ) -> Result<Value, CritError> {
        let options = self.field_options(field);
        let kind = field.kind();
        match kind {
            Kind::Bytes => {
                let text = value
                    .as_str()
                    .ok_or_else(|| json_error(path, "expected a string"))?;
                Ok(Value::Bytes(
                    match options.and_then(|o| o.conv.as_deref()) {
                        Some("unix_name") => decode_quopri(text),
                        _ => decode_base64_lenient(text),
                    }
                    .into(),
                ))
            }
            Kind::Enum(e) => {
                let number = match value {
                    serde_json::Value::String(name) => e
                        .get_value_by_name(name)
                        .ok_or_else(|| {
                            json_error(
                                path,
                                &format!("{name:?} is not a value of enum {}", e.name()),
                            )
                        })?
                        .number(),
                    serde_json::Value::Number(n) => n
                        .as_i64()
                        .and_then(|n| i32::try_from(n).ok())
                        .ok_or_else(|| json_error(path, "enum number out of range"))?,
                    _ => return Err(json_error(path, "expected an enum name")),
                };
                Ok(Value::EnumNumber(number))
            }
            Kind::Bool => Ok(Value::Bool(match value {
                serde_json::Value::Bool(b) => *b,
                // Python's bool(): any non-empty string, any non-zero number.
                serde_json::Value::String(s) => !s.is_empty(),
                serde_json::Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
                _ => return Err(json_error(path, "expected a bool")),
            })),
            Kind::String => match value {
                serde_json::Value::String(s) => Ok(Value::String(s.clone())),
                serde_json::Value::Number(n) => Ok(Value::String(n.to_string())),
                _ => Err(json_error(path, "expected a string")),
            },
            Kind::Double | Kind::Float => {
                let x = value
                    .as_f64()
                    .ok_or_else(|| json_error(path, "expected a number"))?;
                Ok(if matches!(kind, Kind::Float) {
                    Value::F32(x as f32)
                } else {
                    Value::F64(x)
                })
            }
            Kind::Message(_) => Err(json_error(
                path,
                "nested message where a scalar was expected",
            )),
            _ => {
                let n = match value {
                    serde_json::Value::String(text) => integer_from_text(text, field, options)
                        .ok_or_else(|| {
                            json_error(path, &format!("cannot read {text:?} as an integer"))
                        })?,
                    serde_json::Value::Number(n) => {
                        if let Some(i) = n.as_i64() {
                            i128::from(i)
                        } else if let Some(u) = n.as_u64() {
                            i128::from(u)
                        } else {
                            n.as_f64().map(|x| x.trunc() as i128).unwrap_or(0)
                        }
                    }
                    serde_json::Value::Bool(b) => i128::from(*b),
                    _ => return Err(json_error(path, "expected an integer")),
                };
                integer_value(&kind, n)
                    .ok_or_else(|| json_error(path, &format!("{n} is out of range for {kind:?}")))
            }
        }
    }

    /// Fails with the fields a message lacks, as protobuf's serializer does.
    pub fn check_required(&self, message: &DynamicMessage, path: &str) -> Result<(), CritError> {
        let mut missing = Vec::new();
        missing_required(message, "", &mut missing);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(json_error(
                path,
                &format!(
                    "Message {} is missing required fields: {}",
                    message.descriptor().name(),
                    missing.join(",")
                ),
            ))
        }
    }
}

fn missing_required(message: &DynamicMessage, prefix: &str, missing: &mut Vec<String>) {
    for field in message.descriptor().fields() {
        let name = format!("{prefix}{}", field.name());
        if field.is_required() && !message.has_field(&field) {
            missing.push(name);
            continue;
        }
        if !message.has_field(&field) {
            continue;
        }
        match message.get_field(&field).as_ref() {
            Value::Message(sub) => missing_required(sub, &format!("{name}."), missing),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(sub) = item {
                        missing_required(sub, &format!("{name}[{i}]."), missing);
                    }
                }
            }
            _ => {}
        }
    }
}

fn json_error(path: &str, reason: &str) -> CritError {
    CritError::Json {
        path: if path.is_empty() {
            "<top>".into()
        } else {
            path.to_owned()
        },
        reason: reason.to_owned(),
    }
}

fn integer_value(kind: &Kind, n: i128) -> Option<Value> {
    Some(match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(i32::try_from(n).ok()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(i64::try_from(n).ok()?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(u32::try_from(n).ok()?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(u64::try_from(n).ok()?),
        _ => return None,
    })
}

/// Flag tables of pycriu's pb2dict (same names, same bits).
fn flag_table(name: &str) -> Option<&'static [(&'static str, u64)]> {
    const MMAP_PROT: &[(&str, u64)] =
        &[("PROT_READ", 0x1), ("PROT_WRITE", 0x2), ("PROT_EXEC", 0x4)];
    const MMAP_FLAGS: &[(&str, u64)] = &[
        ("MAP_SHARED", 0x1),
        ("MAP_PRIVATE", 0x2),
        ("MAP_DROPPABLE", 0x08),
        ("MAP_ANON", 0x20),
        ("MAP_GROWSDOWN", 0x0100),
    ];
    const MMAP_STATUS: &[(&str, u64)] = &[
        ("VMA_AREA_NONE", 0),
        ("VMA_AREA_REGULAR", 1 << 0),
        ("VMA_AREA_STACK", 1 << 1),
        ("VMA_AREA_VSYSCALL", 1 << 2),
        ("VMA_AREA_VDSO", 1 << 3),
        ("VMA_AREA_HEAP", 1 << 5),
        ("VMA_FILE_PRIVATE", 1 << 6),
        ("VMA_FILE_SHARED", 1 << 7),
        ("VMA_ANON_SHARED", 1 << 8),
        ("VMA_ANON_PRIVATE", 1 << 9),
        ("VMA_AREA_SYSVIPC", 1 << 10),
        ("VMA_AREA_SOCKET", 1 << 11),
        ("VMA_AREA_VVAR", 1 << 12),
        ("VMA_AREA_AIORING", 1 << 13),
        ("VMA_AREA_MEMFD", 1 << 14),
        ("VMA_AREA_SHSTK", 1 << 15),
        ("VMA_AREA_UPROBES", 1 << 17),
        ("VMA_UNSUPP", 1 << 31),
    ];
    const RFILE_FLAGS: &[(&str, u64)] = &[
        ("O_WRONLY", 0o1),
        ("O_RDWR", 0o2),
        ("O_CREAT", 0o100),
        ("O_EXCL", 0o200),
        ("O_NOCTTY", 0o400),
        ("O_TRUNC", 0o1000),
        ("O_APPEND", 0o2000),
        ("O_NONBLOCK", 0o4000),
        ("O_DSYNC", 0o10000),
        ("FASYNC", 0o20000),
        ("O_DIRECT", 0o40000),
        ("O_LARGEFILE", 0o100000),
        ("O_DIRECTORY", 0o200000),
        ("O_NOFOLLOW", 0o400000),
        ("O_NOATIME", 0o1000000),
        ("O_CLOEXEC", 0o2000000),
    ];
    const SEALS_FLAGS: &[(&str, u64)] = &[
        ("F_SEAL_SEAL", 0x1),
        ("F_SEAL_SHRINK", 0x2),
        ("F_SEAL_GROW", 0x4),
        ("F_SEAL_WRITE", 0x8),
        ("F_SEAL_FUTURE_WRITE", 0x10),
    ];
    const PMAP_FLAGS: &[(&str, u64)] = &[
        ("PE_PARENT", 1 << 0),
        ("PE_LAZY", 1 << 1),
        ("PE_PRESENT", 1 << 2),
    ];
    Some(match name {
        "mmap.prot" => MMAP_PROT,
        "mmap.flags" => MMAP_FLAGS,
        "mmap.status" => MMAP_STATUS,
        "rfile.flags" => RFILE_FLAGS,
        "pmap.flags" => PMAP_FLAGS,
        "seals.flags" => SEALS_FLAGS,
        _ => return None,
    })
}

/// Value names of pycriu's `dict` option, by dictionary and field name.
fn dict_table(dict: &str, field: &str) -> Option<&'static [(u64, &'static str)]> {
    const TASK_STATE: &[(u64, &str)] = &[(1, "Alive"), (3, "Zombie"), (6, "Stopped")];
    const SK_FAMILY: &[(u64, &str)] = &[
        (1, "UNIX"),
        (2, "INET"),
        (10, "INET6"),
        (16, "NETLINK"),
        (17, "PACKET"),
    ];
    const SK_TYPE: &[(u64, &str)] = &[
        (1, "STREAM"),
        (2, "DGRAM"),
        (3, "RAW"),
        (5, "SEQPACKET"),
        (10, "PACKET"),
    ];
    const SK_STATE: &[(u64, &str)] = &[
        (1, "ESTABLISHED"),
        (2, "SYN_SENT"),
        (3, "SYN_RECV"),
        (4, "FIN_WAIT1"),
        (5, "FIN_WAIT2"),
        (6, "TIME_WAIT"),
        (7, "CLOSE"),
        (8, "CLOSE_WAIT"),
        (9, "LAST_ACK"),
        (10, "LISTEN"),
    ];
    const SK_PROTO: &[(u64, &str)] = &[(0, "IP"), (6, "TCP"), (17, "UDP"), (136, "UDPLITE")];
    Some(match (dict, field) {
        ("gen", "task_state") => TASK_STATE,
        ("sk", "family") => SK_FAMILY,
        ("sk", "type") => SK_TYPE,
        ("sk", "state") => SK_STATE,
        ("sk", "proto") => SK_PROTO,
        _ => return None,
    })
}

fn hex_text(n: i128) -> String {
    if n < 0 {
        format!("0x-{:x}", -n)
    } else {
        format!("0x{n:x}")
    }
}

/// Renders an integer as pretty crit does, or `None` to keep the number.
fn pretty_integer(
    n: i128,
    is_hex: bool,
    field: &FieldDescriptor,
    options: Option<&CriuFieldOptions>,
) -> Option<Json> {
    if is_hex {
        return Some(Json::Str(hex_text(n)));
    }
    let options = options?;
    if options.dev {
        return Some(Json::Str(decode_dev(n as u64, options.odev)));
    }
    if let Some(table_name) = options.flags.as_deref() {
        return Some(Json::Str(match flag_table(table_name) {
            Some(table) => map_flags(n as u64, table),
            None => hex_text(n),
        }));
    }
    if let Some(dict) = options.dict.as_deref() {
        if let Some(name) =
            dict_table(dict, field.name()).and_then(|t| t.iter().find(|(v, _)| *v as i128 == n))
        {
            return Some(Json::Str(name.1.to_owned()));
        }
    }
    None
}

fn map_flags(value: u64, table: &[(&str, u64)]) -> String {
    let mut names: Vec<String> = table
        .iter()
        .filter(|(_, bit)| value & bit != 0)
        .map(|(name, _)| (*name).to_owned())
        .collect();
    let known: u64 = table.iter().map(|(_, bit)| bit).sum();
    let rest = value & !known;
    if rest != 0 {
        names.push(format!("0x{rest:x}"));
    }
    names.join(" | ")
}

/// Kernel's new dev_t split (20 minor bits), or glibc's `major()`/`minor()` for odev.
fn decode_dev(value: u64, odev: bool) -> String {
    if odev {
        let major = ((value >> 8) & 0xfff) | ((value >> 32) & !0xfff);
        let minor = (value & 0xff) | ((value >> 12) & !0xff);
        format!("{major}:{minor}")
    } else {
        format!("{}:{}", value >> 20, value & ((1 << 20) - 1))
    }
}

fn encode_dev(text: &str, odev: bool) -> Option<i128> {
    let (major, minor) = text.split_once(':')?;
    let major = parse_python_int(major, 10)? as u64;
    let minor = parse_python_int(minor, 10)? as u64;
    Some(if odev {
        (((major & 0xfff) << 8)
            | ((major & !0xfff) << 32)
            | (minor & 0xff)
            | ((minor & !0xff) << 12)) as i128
    } else {
        i128::from(major << 20 | minor)
    })
}

/// Reads an integer field given as text, in every spelling pretty crit prints.
fn integer_from_text(
    text: &str,
    field: &FieldDescriptor,
    options: Option<&CriuFieldOptions>,
) -> Option<i128> {
    if let Some(options) = options {
        if options.dev {
            return encode_dev(text, options.odev);
        }
        if let Some(table) = options.flags.as_deref().and_then(flag_table) {
            if text.is_empty() {
                return Some(0);
            }
            let mut sum = 0i128;
            for part in text.split('|').map(str::trim) {
                sum += match table.iter().find(|(name, _)| *name == part) {
                    Some((_, bit)) => i128::from(*bit),
                    None => parse_python_int(part, 0)?,
                };
            }
            return Some(sum);
        }
        if let Some(dict) = options.dict.as_deref() {
            if let Some((value, _)) =
                dict_table(dict, field.name()).and_then(|t| t.iter().find(|(_, n)| *n == text))
            {
                return Some(i128::from(*value));
            }
        }
    }
    if let Some(rest) = text.strip_prefix("0x-") {
        return parse_python_int(rest, 16).map(|n| -n);
    }
    parse_python_int(text, 0)
}

/// Python's `int(text, base)` for bases 0 (prefix decides) and 10/16.
fn parse_python_int(text: &str, base: u32) -> Option<i128> {
    let text = text.trim();
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = match base {
        0 => {
            if let Some(d) = lower.strip_prefix("0x") {
                (16, d.to_owned())
            } else if let Some(d) = lower.strip_prefix("0o") {
                (8, d.to_owned())
            } else if let Some(d) = lower.strip_prefix("0b") {
                (2, d.to_owned())
            } else {
                // Base 0 forbids leading zeros in decimal ("010"), except all zeros.
                if lower.len() > 1
                    && lower.starts_with('0')
                    && lower.trim_start_matches(['0', '_']).is_empty()
                {
                    return Some(0);
                }
                if lower.len() > 1 && lower.starts_with('0') {
                    return None;
                }
                (10, lower)
            }
        }
        16 => (
            16,
            lower.strip_prefix("0x").map(str::to_owned).unwrap_or(lower),
        ),
        radix => (radix, lower),
    };
    let digits = digits.strip_prefix('_').unwrap_or(&digits);
    if digits.is_empty() || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    let value = i128::from_str_radix(&digits.replace('_', ""), radix).ok()?;
    Some(if negative { -value } else { value })
}

/// `IPv4Address(ntohl(w0))` or the IPv6 address of four network-order words.
fn ip_to_string(items: &[Value]) -> String {
    let words: Vec<u32> = items.iter().filter_map(|v| v.as_u32()).collect();
    if words.len() == 1 {
        return Ipv4Addr::from(words[0].to_le_bytes()).to_string();
    }
    let mut bytes = [0u8; 16];
    for (i, word) in words.iter().take(4).enumerate() {
        bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    compress_ipv6(Ipv6Addr::from(bytes))
}

/// IPv6 text the way Python's `ipaddress` compresses it (longest run of two
/// or more zero groups becomes `::`, first run on ties, lower-case hex, no
/// dotted IPv4 tail).
fn compress_ipv6(addr: Ipv6Addr) -> String {
    let groups = addr.segments();
    let (mut best_start, mut best_len) = (usize::MAX, 0);
    let mut i = 0;
    while i < 8 {
        if groups[i] == 0 {
            let start = i;
            while i < 8 && groups[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                best_start = start;
                best_len = i - start;
            }
        } else {
            i += 1;
        }
    }
    let hex = |g: &[u16]| {
        g.iter()
            .map(|x| format!("{x:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if best_len < 2 {
        return hex(&groups);
    }
    format!(
        "{}::{}",
        hex(&groups[..best_start]),
        hex(&groups[best_start + best_len..])
    )
}

fn ip_from_string(text: &str) -> Option<Vec<Value>> {
    if let Ok(v4) = text.parse::<Ipv4Addr>() {
        return Some(vec![Value::U32(u32::from_le_bytes(v4.octets()))]);
    }
    let v6: Ipv6Addr = text.parse().ok()?;
    let octets = v6.octets();
    Some(
        octets
            .chunks(4)
            .map(|c| Value::U32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_render_like_pycriu() {
        let table = flag_table("mmap.prot").unwrap();
        assert_eq!(map_flags(0x3, table), "PROT_READ | PROT_WRITE");
        assert_eq!(map_flags(0, table), "");
        assert_eq!(map_flags(0x11, table), "PROT_READ | 0x10");
    }

    #[test]
    fn python_int_parsing() {
        assert_eq!(parse_python_int("0x1f", 0), Some(31));
        assert_eq!(parse_python_int(" 42 ", 0), Some(42));
        assert_eq!(parse_python_int("-7", 0), Some(-7));
        assert_eq!(parse_python_int("010", 0), None);
        assert_eq!(parse_python_int("00", 0), Some(0));
        assert_eq!(parse_python_int("1_000", 0), Some(1000));
        assert_eq!(parse_python_int("0o17", 0), Some(15));
        assert_eq!(parse_python_int("zz", 0), None);
    }

    #[test]
    fn dev_numbers_round_trip() {
        assert_eq!(decode_dev(8 << 20 | 1, false), "8:1");
        assert_eq!(encode_dev("8:1", false), Some(i128::from(8u64 << 20 | 1)));
        // glibc makedev(259, 300)
        let old = ((259u64 & 0xfff) << 8) | (300 & 0xff) | ((300 & !0xff) << 12);
        assert_eq!(decode_dev(old, true), "259:300");
        assert_eq!(encode_dev("259:300", true), Some(old as i128));
    }

    #[test]
    fn addresses_render_like_python_ipaddress() {
        let v4 = [Value::U32(u32::from_le_bytes([127, 0, 0, 1]))];
        assert_eq!(ip_to_string(&v4), "127.0.0.1");
        let words = ip_from_string("fe80::1:0:0:5").unwrap();
        assert_eq!(ip_to_string(&words), "fe80::1:0:0:5");
        let words = ip_from_string("::ffff:192.0.2.128").unwrap();
        assert_eq!(ip_to_string(&words), "::ffff:c000:280");
        let words = ip_from_string("1:0:0:2:0:0:0:3").unwrap();
        assert_eq!(ip_to_string(&words), "1:0:0:2::3");
    }
}
