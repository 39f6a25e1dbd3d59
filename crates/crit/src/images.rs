//! Whole images <-> `{"magic": ..., "entries": [...]}`, with the per-image
//! special cases of pycriu's `images.py`: the pagemap head, ghost file
//! contents and chunks, and the raw "extra" payloads after some entries.

use criu_image::{ImageKind, ImageReader, ImageWriter};
use prost::Message;
use prost_reflect::DynamicMessage;

use crate::codec::{decode_base64_lenient, encode_base64_lines};
use crate::convert::Schema;
use crate::error::CritError;
use crate::json::Json;

/// Raw data that follows an entry, and where its length comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Extra {
    /// `bytes` bytes (pipes-data, fifo-data).
    PipeData,
    /// `length` bytes (sk-queues).
    SkQueue,
    /// `inq_len` then `outq_len` bytes (tcp-stream), shown as `{"inq", "outq"}`.
    TcpStream,
    /// `keys_bytes + values_bytes` (bpfmap-data).
    BpfmapData,
    /// `nsems` u16 values padded to 8 bytes, shown as a list of numbers.
    IpcSem,
    /// `qnum` times an `ipc_msg` entry + `msize` bytes padded to 8.
    IpcMsg,
    /// `size` bytes padded to 4.
    IpcShm,
}

#[derive(Clone, Copy, Debug)]
enum Handler {
    Entries {
        message: &'static str,
        extra: Option<Extra>,
    },
    Pagemap,
    GhostFile,
}

fn handler_for(kind: ImageKind) -> Option<Handler> {
    let extra = match kind {
        ImageKind::PipesData | ImageKind::FifoData => Some(Extra::PipeData),
        ImageKind::SkQueues => Some(Extra::SkQueue),
        ImageKind::TcpStream => Some(Extra::TcpStream),
        ImageKind::BpfmapData => Some(Extra::BpfmapData),
        ImageKind::IpcnsSem => Some(Extra::IpcSem),
        ImageKind::IpcnsMsg => Some(Extra::IpcMsg),
        ImageKind::IpcnsShm => Some(Extra::IpcShm),
        ImageKind::Pagemap | ImageKind::ShmemPagemap => return Some(Handler::Pagemap),
        ImageKind::GhostFile => return Some(Handler::GhostFile),
        _ => None,
    };
    kind.entry_message()
        .map(|message| Handler::Entries { message, extra })
}

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

/// `human_readable()` of crit's `--nopl`.
fn human_readable(size: u64) -> String {
    let mut num = size as f64;
    for unit in ["", "K", "M", "G", "T", "P", "E", "Z"] {
        if num < 1024.0 {
            return if num.fract() == 0.0 {
                format!("{num:.0}{unit}B")
            } else {
                format!("{num:.1}{unit}B")
            };
        }
        num /= 1024.0;
    }
    format!("{num:.1}YB")
}

fn field_u64(message: &DynamicMessage, name: &str) -> u64 {
    message
        .get_field_by_name(name)
        .and_then(|v| v.as_u64().or_else(|| v.as_u32().map(u64::from)))
        .unwrap_or(0)
}

fn field_bool(message: &DynamicMessage, name: &str) -> bool {
    message
        .get_field_by_name(name)
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// Options of `decode`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DecodeOptions {
    /// Field-specific formats (hex, flags, devices...).
    pub pretty: bool,
    /// Replace extra payloads by their size (`show --nopl`).
    pub no_payload: bool,
}

struct Decoder<'a> {
    schema: &'a Schema,
    reader: ImageReader,
    options: DecodeOptions,
}

impl Decoder<'_> {
    fn next(&mut self, message: &str) -> Result<Option<DynamicMessage>, CritError> {
        let desc = self.schema.message(message)?;
        let Some(payload) = self.reader.next_payload()? else {
            return Ok(None);
        };
        self.schema
            .decode(&desc, payload)
            .map(Some)
            .map_err(|reason| CritError::Decode {
                file: self.reader.file_name().to_owned(),
                offset: self.reader.last_entry_offset(),
                message: message.to_owned(),
                reason,
            })
    }

    fn extra(&mut self, extra: Extra, entry: &DynamicMessage) -> Result<Json, CritError> {
        if self.options.no_payload {
            let size = self.skip_extra(extra, entry)?;
            return Ok(Json::Str(format!("... <{}>", human_readable(size))));
        }
        Ok(match extra {
            Extra::PipeData => Json::Str(encode_base64_lines(
                &self.reader.read_extra(field_u64(entry, "bytes"))?,
            )),
            Extra::SkQueue => Json::Str(encode_base64_lines(
                &self.reader.read_extra(field_u64(entry, "length"))?,
            )),
            Extra::BpfmapData => {
                let len = field_u64(entry, "keys_bytes") + field_u64(entry, "values_bytes");
                Json::Str(encode_base64_lines(&self.reader.read_extra(len)?))
            }
            Extra::TcpStream => {
                let inq = self.reader.read_extra(field_u64(entry, "inq_len"))?;
                let outq = self.reader.read_extra(field_u64(entry, "outq_len"))?;
                let mut out = Json::object();
                out.push("inq", Json::Str(encode_base64_lines(&inq)));
                out.push("outq", Json::Str(encode_base64_lines(&outq)));
                out
            }
            Extra::IpcSem => {
                let size = 2 * field_u64(entry, "nsems");
                let data = self.reader.read_extra(size)?;
                self.reader.skip_extra(round_up(size, 8) - size)?;
                Json::List(
                    data.chunks(2)
                        .map(|c| Json::UInt(u64::from(u16::from_le_bytes([c[0], c[1]]))))
                        .collect(),
                )
            }
            Extra::IpcShm => {
                let size = field_u64(entry, "size");
                let data = self.reader.read_extra(size)?;
                self.reader.skip_extra(round_up(size, 4) - size)?;
                Json::Str(encode_base64_lines(&data))
            }
            Extra::IpcMsg => {
                let mut items = Vec::new();
                for _ in 0..field_u64(entry, "qnum") {
                    let Some(msg) = self.next("ipc_msg")? else {
                        break;
                    };
                    let msize = field_u64(&msg, "msize");
                    let data = self.reader.read_extra(msize)?;
                    self.reader.skip_extra(round_up(msize, 8) - msize)?;
                    // pycriu shows the message headers without pretty formats.
                    items.push(self.schema.to_json(&msg, false));
                    items.push(Json::Str(encode_base64_lines(&data)));
                }
                Json::List(items)
            }
        })
    }

    /// Skips an extra payload and returns the size crit reports for it.
    fn skip_extra(&mut self, extra: Extra, entry: &DynamicMessage) -> Result<u64, CritError> {
        let skip = |reader: &mut ImageReader, len: u64| reader.skip_extra(len).map(|()| len);
        Ok(match extra {
            Extra::PipeData => skip(&mut self.reader, field_u64(entry, "bytes"))?,
            Extra::SkQueue => skip(&mut self.reader, field_u64(entry, "length"))?,
            Extra::BpfmapData => skip(
                &mut self.reader,
                field_u64(entry, "keys_bytes") + field_u64(entry, "values_bytes"),
            )?,
            Extra::TcpStream => skip(
                &mut self.reader,
                field_u64(entry, "inq_len") + field_u64(entry, "outq_len"),
            )?,
            Extra::IpcSem => {
                let size = 2 * field_u64(entry, "nsems");
                self.reader.skip_extra(round_up(size, 8))?;
                size
            }
            Extra::IpcShm => {
                let size = field_u64(entry, "size");
                self.reader.skip_extra(round_up(size, 4))?;
                size
            }
            Extra::IpcMsg => {
                let mut total = 0;
                for _ in 0..field_u64(entry, "qnum") {
                    let Some(msg) = self.next("ipc_msg")? else {
                        break;
                    };
                    let msize = field_u64(&msg, "msize");
                    self.reader.skip_extra(round_up(msize, 8))?;
                    total += msg.encoded_len() as u64 + msize;
                }
                total
            }
        })
    }
}

/// Decodes an image (bytes of any kind crit knows) into crit's JSON.
pub fn decode_image(
    schema: &Schema,
    file: &str,
    bytes: Vec<u8>,
    options: DecodeOptions,
) -> Result<Json, CritError> {
    let reader = open_detected(file, bytes)?;
    let kind = reader.kind();
    let handler = handler_for(kind).ok_or_else(|| CritError::UnknownMagic {
        magic: kind.type_magic().unwrap_or(0),
    })?;
    let mut decoder = Decoder {
        schema,
        reader,
        options,
    };
    let mut entries = Vec::new();
    match handler {
        Handler::Entries { message, extra } => {
            while let Some(entry) = decoder.next(message)? {
                let mut json = schema.to_json(&entry, options.pretty);
                if let Some(extra) = extra {
                    let payload = decoder.extra(extra, &entry)?;
                    json.push("extra", payload);
                }
                entries.push(json);
            }
        }
        Handler::Pagemap => {
            let mut message = "pagemap_head";
            while let Some(entry) = decoder.next(message)? {
                entries.push(schema.to_json(&entry, options.pretty));
                message = "pagemap_entry";
            }
        }
        Handler::GhostFile => {
            if let Some(head) = decoder.next("ghost_file_entry")? {
                let mut json = schema.to_json(&head, options.pretty);
                if field_bool(&head, "chunks") {
                    entries.push(json);
                    while let Some(chunk) = decoder.next("ghost_chunk_entry")? {
                        let mut chunk_json = schema.to_json(&chunk, options.pretty);
                        let len = field_u64(&chunk, "len");
                        if options.no_payload {
                            decoder.reader.skip_extra(len)?;
                        } else {
                            chunk_json.push(
                                "extra",
                                Json::Str(encode_base64_lines(&decoder.reader.read_extra(len)?)),
                            );
                        }
                        entries.push(chunk_json);
                    }
                } else {
                    let rest = decoder.reader.read_to_end()?;
                    if !options.no_payload {
                        json.push("extra", Json::Str(encode_base64_lines(&rest)));
                    }
                    entries.push(json);
                }
            }
        }
    }
    let mut image = Json::object();
    image.push("magic", Json::Str(kind.magic_name().to_owned()));
    image.push("entries", Json::List(entries));
    Ok(image)
}

fn open_detected(file: &str, bytes: Vec<u8>) -> Result<ImageReader, CritError> {
    // An unknown magic is crit's "raw data?" error, not a framing error.
    let magic_at = |offset: usize| {
        bytes
            .get(offset..offset + 4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    };
    let first = magic_at(0);
    let type_magic = match first {
        Some(criu_image::IMG_COMMON_MAGIC | criu_image::IMG_SERVICE_MAGIC) => magic_at(4),
        other => other,
    };
    if let Some(magic) = type_magic {
        if ImageKind::from_type_magic(magic).is_none() {
            return Err(CritError::UnknownMagic { magic });
        }
    }
    Ok(ImageReader::detect_bytes(file, bytes)?)
}

/// `crit info`: the magic and the number of entries.
pub fn image_info(schema: &Schema, file: &str, bytes: Vec<u8>) -> Result<Json, CritError> {
    let image = decode_image(
        schema,
        file,
        bytes,
        DecodeOptions {
            pretty: false,
            no_payload: true,
        },
    )?;
    let magic = image.get("magic").cloned().unwrap_or(Json::Null);
    let mut count = match image.get("entries") {
        Some(Json::List(entries)) => entries.len() as u64,
        _ => 0,
    };
    if matches!(&magic, Json::Str(m) if m == "PAGEMAP") {
        // crit does not count the pagemap head.
        count = count.saturating_sub(1);
    }
    let mut info = Json::object();
    info.push("magic", magic);
    info.push("count", Json::UInt(count));
    Ok(info)
}

fn is_truthy(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        serde_json::Value::String(s) => !s.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
    }
}

fn extra_text<'a>(extra: &'a serde_json::Value, path: &str) -> Result<&'a str, CritError> {
    extra.as_str().ok_or_else(|| CritError::Json {
        path: path.to_owned(),
        reason: "expected a base64 string".into(),
    })
}

struct Encoder<'a> {
    schema: &'a Schema,
    writer: ImageWriter,
}

impl Encoder<'_> {
    fn entry(
        &mut self,
        message: &str,
        value: &serde_json::Value,
        path: &str,
    ) -> Result<DynamicMessage, CritError> {
        let desc = self.schema.message(message)?;
        let entry = self.schema.from_json(&desc, value, path)?;
        self.schema.check_required(&entry, path)?;
        self.writer.write_entry(&entry)?;
        Ok(entry)
    }

    fn padded(&mut self, data: &[u8], len: u64, align: u64) -> Result<(), CritError> {
        let take = data.len().min(len as usize);
        self.writer.write_extra(&data[..take])?;
        let pad = round_up(take as u64, align) - take as u64;
        self.writer.write_extra(&vec![0u8; pad as usize])?;
        Ok(())
    }

    fn extra(
        &mut self,
        extra: Extra,
        entry: &DynamicMessage,
        value: &serde_json::Value,
        path: &str,
    ) -> Result<(), CritError> {
        match extra {
            Extra::PipeData | Extra::SkQueue | Extra::BpfmapData => {
                self.writer
                    .write_extra(&decode_base64_lenient(extra_text(value, path)?))?;
            }
            Extra::TcpStream => {
                for queue in ["inq", "outq"] {
                    let text = value
                        .get(queue)
                        .map(|v| extra_text(v, path))
                        .transpose()?
                        .unwrap_or("");
                    self.writer.write_extra(&decode_base64_lenient(text))?;
                }
            }
            Extra::IpcShm => {
                let data = decode_base64_lenient(extra_text(value, path)?);
                let size = field_u64(entry, "size");
                // pycriu writes data[:size] and pads what it wrote to 4.
                let take = data.len().min(size as usize);
                self.writer.write_extra(&data[..take])?;
                self.writer
                    .write_extra(&vec![0u8; (round_up(size, 4) - size) as usize])?;
            }
            Extra::IpcSem => {
                let values = value.as_array().ok_or_else(|| CritError::Json {
                    path: path.to_owned(),
                    reason: "expected a list".into(),
                })?;
                let nsems = field_u64(entry, "nsems");
                if values.len() as u64 != nsems {
                    return Err(CritError::Json {
                        path: path.to_owned(),
                        reason: format!(
                            "Number of semaphores mismatch: {} values for nsems {nsems}",
                            values.len()
                        ),
                    });
                }
                let mut data = Vec::with_capacity(values.len() * 2);
                for v in values {
                    let n = v
                        .as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .ok_or_else(|| CritError::Json {
                            path: path.to_owned(),
                            reason: format!("{v} is not a semaphore value"),
                        })?;
                    data.extend_from_slice(&n.to_le_bytes());
                }
                self.padded(&data, data.len() as u64, 8)?;
            }
            Extra::IpcMsg => {
                let items = value.as_array().ok_or_else(|| CritError::Json {
                    path: path.to_owned(),
                    reason: "expected a list".into(),
                })?;
                for (i, pair) in items.chunks(2).enumerate() {
                    let msg = self.entry("ipc_msg", &pair[0], &format!("{path}[{}]", 2 * i))?;
                    let text = pair
                        .get(1)
                        .map(|v| extra_text(v, path))
                        .transpose()?
                        .unwrap_or("");
                    let data = decode_base64_lenient(text);
                    self.padded(&data, field_u64(&msg, "msize"), 8)?;
                }
            }
        }
        Ok(())
    }
}

/// `crit encode`: crit's JSON back into image bytes.
pub fn encode_image(schema: &Schema, image: &serde_json::Value) -> Result<Vec<u8>, CritError> {
    let magic = image
        .get("magic")
        .and_then(|m| m.as_str())
        .ok_or_else(|| CritError::Json {
            path: "magic".into(),
            reason: "missing image magic name".into(),
        })?;
    let kind = ImageKind::from_magic_name(magic).map_err(|e| CritError::Json {
        path: "magic".into(),
        reason: e.to_string(),
    })?;
    let handler = handler_for(kind).ok_or_else(|| CritError::Json {
        path: "magic".into(),
        reason: format!("no handler for {magic} images"),
    })?;
    let entries = image
        .get("entries")
        .and_then(|e| e.as_array())
        .ok_or_else(|| CritError::Json {
            path: "entries".into(),
            reason: "missing entries list".into(),
        })?;
    let mut encoder = Encoder {
        schema,
        writer: ImageWriter::in_memory(kind),
    };
    encoder.writer.ensure_created()?;
    match handler {
        Handler::Entries { message, extra } => {
            for (i, value) in entries.iter().enumerate() {
                let path = format!("entries[{i}]");
                let entry = encoder.entry(message, value, &path)?;
                if let (Some(extra), Some(payload)) = (extra, value.get("extra")) {
                    if is_truthy(payload) {
                        encoder.extra(extra, &entry, payload, &format!("{path}.extra"))?;
                    }
                }
            }
        }
        Handler::Pagemap => {
            for (i, value) in entries.iter().enumerate() {
                let message = if i == 0 {
                    "pagemap_head"
                } else {
                    "pagemap_entry"
                };
                encoder.entry(message, value, &format!("entries[{i}]"))?;
            }
        }
        Handler::GhostFile => {
            if let Some(first) = entries.first() {
                let head = encoder.entry("ghost_file_entry", first, "entries[0]")?;
                if field_bool(&head, "chunks") {
                    for (i, value) in entries.iter().enumerate().skip(1) {
                        let path = format!("entries[{i}]");
                        encoder.entry("ghost_chunk_entry", value, &path)?;
                        if let Some(extra) = value.get("extra") {
                            encoder
                                .writer
                                .write_extra(&decode_base64_lenient(extra_text(extra, &path)?))?;
                        }
                    }
                } else if let Some(extra) = first.get("extra") {
                    encoder
                        .writer
                        .write_extra(&decode_base64_lenient(extra_text(
                            extra,
                            "entries[0].extra",
                        )?))?;
                }
            }
        }
    }
    Ok(encoder.writer.into_bytes()?)
}
