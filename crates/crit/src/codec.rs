//! Byte encodings crit uses in JSON: Python's `base64.encodebytes` (MIME lines
//! of 76 characters, each ending in `\n`) and `quopri` (quoted-printable, for
//! unix socket names).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// `base64.encodebytes(data).decode()`.
pub fn encode_base64_lines(data: &[u8]) -> String {
    let flat = STANDARD.encode(data);
    let mut out = String::with_capacity(flat.len() + flat.len() / 76 + 1);
    for chunk in flat.as_bytes().chunks(76) {
        // The base64 alphabet is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// `base64.decodebytes(text)`: characters outside the alphabet are skipped,
/// decoding stops at the padding.
pub fn decode_base64_lenient(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut quad = [0u8; 4];
    let mut filled = 0;
    let mut pads = 0;
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                if filled >= 2 {
                    pads += 1;
                    if filled + pads == 4 {
                        break;
                    }
                }
                continue;
            }
            _ => continue,
        };
        if pads > 0 {
            break;
        }
        quad[filled] = value;
        filled += 1;
        if filled == 4 {
            out.push(quad[0] << 2 | quad[1] >> 4);
            out.push(quad[1] << 4 | quad[2] >> 2);
            out.push(quad[2] << 6 | quad[3]);
            filled = 0;
        }
    }
    if filled >= 2 {
        out.push(quad[0] << 2 | quad[1] >> 4);
    }
    if filled >= 3 {
        out.push(quad[1] << 4 | quad[2] >> 2);
    }
    out
}

const QP_MAX_LINE: usize = 76;
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut Vec<u8>, byte: u8) {
    out.push(b'=');
    out.push(HEX_UPPER[usize::from(byte >> 4)]);
    out.push(HEX_UPPER[usize::from(byte & 15)]);
}

/// `quopri.encodestring(data)` (binascii.b2a_qp with text line ends, no tab
/// quoting, no header mode).
pub fn encode_quopri(data: &[u8]) -> String {
    let crlf = data
        .iter()
        .position(|&b| b == b'\n')
        .is_some_and(|at| at > 0 && data[at - 1] == b'\r');
    let newline = |out: &mut Vec<u8>| {
        if crlf {
            out.push(b'\r');
        }
        out.push(b'\n');
    };
    let mut out = Vec::with_capacity(data.len() * 3);
    let mut line_len = 0;
    let mut i = 0;
    while i < data.len() {
        let c = data[i];
        let last = i + 1 == data.len();
        let next = data.get(i + 1).copied();
        let lone_dot = c == b'.' && line_len == 0 && matches!(next, None | Some(b'\n' | b'\r' | 0));
        let must_escape = c > 126
            || c == b'='
            || lone_dot
            || ((c == b'\t' || c == b' ') && last)
            || (c < 33 && c != b'\r' && c != b'\n' && c != b'\t' && c != b' ');
        if must_escape {
            if line_len + 3 >= QP_MAX_LINE {
                out.push(b'=');
                newline(&mut out);
                line_len = 0;
            }
            push_escaped(&mut out, c);
            line_len += 3;
            i += 1;
        } else if c == b'\n' || (c == b'\r' && next == Some(b'\n')) {
            line_len = 0;
            // Whitespace at the end of a line is protected.
            if let Some(&prev) = out.last() {
                if prev == b' ' || prev == b'\t' {
                    out.pop();
                    push_escaped(&mut out, prev);
                }
            }
            newline(&mut out);
            i += if c == b'\r' { 2 } else { 1 };
        } else {
            if !last && next != Some(b'\n') && line_len + 1 >= QP_MAX_LINE {
                out.push(b'=');
                newline(&mut out);
                line_len = 0;
            }
            line_len += 1;
            out.push(c);
            i += 1;
        }
    }
    // Every byte emitted is ASCII.
    String::from_utf8_lossy(&out).into_owned()
}

/// `quopri.decodestring(text)`.
pub fn decode_quopri(text: &str) -> Vec<u8> {
    let data = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] != b'=' {
            out.push(data[i]);
            i += 1;
            continue;
        }
        i += 1;
        if i >= data.len() {
            break;
        }
        match data[i] {
            b'\n' | b'\r' => {
                // Soft line break: skip to the end of the line.
                while i < data.len() && data[i] != b'\n' {
                    i += 1;
                }
                if i < data.len() {
                    i += 1;
                }
            }
            b'=' => {
                out.push(b'=');
                i += 1;
            }
            _ => match (hex(data[i]), data.get(i + 1).and_then(|&b| hex(b))) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'='),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lines_match_python() {
        assert_eq!(encode_base64_lines(b""), "");
        assert_eq!(encode_base64_lines(b"abc"), "YWJj\n");
        let long = encode_base64_lines(&[b'a'; 100]);
        assert_eq!(long.lines().next().unwrap().len(), 76);
        assert!(long.ends_with("==\n") || long.ends_with("=\n") || long.ends_with('\n'));
        assert_eq!(decode_base64_lenient("YW Jj\n!ZA=="), b"abcd");
        assert_eq!(decode_base64_lenient(&long), vec![b'a'; 100]);
    }

    #[test]
    fn quopri_matches_python() {
        // Expected strings printed by CPython's quopri.encodestring.
        assert_eq!(encode_quopri(b"\x00sock=name "), "=00sock=3Dname=20");
        assert_eq!(encode_quopri(b". "), ".=20");
        assert_eq!(encode_quopri(b"x\ty\n"), "x\ty\n");
        assert_eq!(encode_quopri(b"line \nnext"), "line=20\nnext");
        assert_eq!(
            encode_quopri(&[b'a'; 100]),
            format!("{}=\n{}", "a".repeat(75), "a".repeat(25))
        );
        assert_eq!(
            encode_quopri(&[0u8; 40]),
            format!("{}=\n{}", "=00".repeat(25), "=00".repeat(15))
        );
        for sample in [
            &b"\x00sock=name "[..],
            b". ",
            b"line \nnext",
            &[0u8; 40],
            &[0xffu8; 7],
        ] {
            assert_eq!(decode_quopri(&encode_quopri(sample)), sample);
        }
    }
}
