//! Java `Properties.load` syntax, ported from `java.util.Properties` (`LineReader` and `load0`,
//! `loadConvert`), so a zoo.cfg splits into exactly the key/value pairs the JVM would see.
//!
//! Rules (all from the JDK source):
//! * a line ends at `\n`, `\r` or `\r\n`; leading space, tab and form feed are skipped;
//! * a line whose first non-blank character is `#` or `!` is a comment, and cannot be continued;
//! * an odd number of `\` at the end of a line joins the next line, minus its leading blanks
//!   (a continued line starting with `#` is *not* a comment); a `\` at end of input is dropped;
//! * the key ends at the first unescaped `=`, `:` or blank; blanks around one `=`/`:` separator are
//!   skipped; everything after is the value;
//! * escapes: `\t \n \r \f`, `\uXXXX` (UTF-16 code units, so surrogate pairs combine), and `\c` = `c`.
//!
//! ZooKeeper then trims keys and values with `String.trim` (every char <= U+0020); that is done here too.

use super::error::{ConfigError, Location};

/// One `key=value` pair of a properties text, after unescaping and trimming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key, trimmed.
    pub key: String,
    /// The value, trimmed.
    pub value: String,
    /// 1-based physical line the logical line starts on.
    pub line: usize,
}

/// Blank characters as `Properties` sees them (space, tab, form feed).
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\u{c}'
}

/// `String.trim()`: strips every char <= U+0020 at both ends.
pub fn java_trim(text: &str) -> &str {
    text.trim_matches(|c: char| c <= ' ')
}

/// Splits `text` into entries in file order. Duplicate keys are all returned; the caller applies them in
/// order, so the later one wins as in `Properties` (a `Hashtable`).
pub fn parse(text: &str) -> Result<Vec<Entry>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    for (line, chars) in logical_lines(text) {
        let (key, value) = split_key_value(&chars);
        let key = unescape(key, line)?;
        let value = unescape(value, line)?;
        entries.push(Entry {
            key: java_trim(&key).to_string(),
            value: java_trim(&value).to_string(),
            line,
        });
    }
    Ok(entries)
}

/// Port of `Properties.LineReader.readLine`: yields (start line, characters) per logical line, with
/// continuation backslashes removed but every other escape still in place.
fn logical_lines(text: &str) -> Vec<(usize, Vec<char>)> {
    let mut lines = Vec::new();
    let mut buffer: Vec<char> = Vec::new();
    let mut physical_line = 1;
    let mut start_line = 1;
    let mut skip_white_space = true;
    let mut is_comment_line = false;
    let mut is_new_line = true;
    let mut appended_line_begin = false;
    let mut preceding_backslash = false;
    let mut skip_lf = false;

    for c in text.chars() {
        if skip_lf {
            skip_lf = false;
            if c == '\n' {
                continue;
            }
        }
        let is_eol = c == '\n' || c == '\r';
        if skip_white_space {
            if is_blank(c) {
                continue;
            }
            if !appended_line_begin && is_eol {
                // A blank line between logical lines.
                physical_line += 1;
                if c == '\r' {
                    skip_lf = true;
                }
                continue;
            }
            skip_white_space = false;
            appended_line_begin = false;
        }
        if is_new_line {
            is_new_line = false;
            start_line = physical_line;
            if c == '#' || c == '!' {
                is_comment_line = true;
                continue;
            }
        }
        if !is_eol {
            if !is_comment_line {
                buffer.push(c);
            }
            preceding_backslash = c == '\\' && !preceding_backslash;
            continue;
        }
        physical_line += 1;
        if c == '\r' {
            skip_lf = true;
        }
        if is_comment_line || buffer.is_empty() {
            is_comment_line = false;
            is_new_line = true;
            skip_white_space = true;
            preceding_backslash = false;
            buffer.clear();
            continue;
        }
        if preceding_backslash {
            // Continuation: drop the backslash, then skip the next line's leading blanks.
            buffer.pop();
            skip_white_space = true;
            appended_line_begin = true;
            preceding_backslash = false;
        } else {
            lines.push((start_line, std::mem::take(&mut buffer)));
            is_new_line = true;
            skip_white_space = true;
        }
    }
    if !buffer.is_empty() && !is_comment_line {
        if preceding_backslash {
            buffer.pop();
        }
        lines.push((start_line, buffer));
    }
    lines
}

/// Port of `Properties.load0`: splits a logical line into its raw (still escaped) key and value.
fn split_key_value(chars: &[char]) -> (&[char], &[char]) {
    let mut key_len = 0;
    let mut value_start = chars.len();
    let mut has_separator = false;
    let mut preceding_backslash = false;
    while key_len < chars.len() {
        let c = chars[key_len];
        if (c == '=' || c == ':') && !preceding_backslash {
            value_start = key_len + 1;
            has_separator = true;
            break;
        }
        if is_blank(c) && !preceding_backslash {
            value_start = key_len + 1;
            break;
        }
        preceding_backslash = c == '\\' && !preceding_backslash;
        key_len += 1;
    }
    while value_start < chars.len() {
        let c = chars[value_start];
        if !is_blank(c) {
            if !has_separator && (c == '=' || c == ':') {
                has_separator = true;
            } else {
                break;
            }
        }
        value_start += 1;
    }
    (&chars[..key_len], &chars[value_start..])
}

/// Port of `Properties.loadConvert`. Works in UTF-16 code units like Java so that `\uD83D\uDE00`
/// becomes one character; an unpaired surrogate is a syntax error (a Rust `String` cannot hold one).
fn unescape(chars: &[char], line: usize) -> Result<String, ConfigError> {
    let syntax = |message: &str| ConfigError::Syntax {
        location: Location::Line(line),
        message: message.to_string(),
    };
    let mut units: Vec<u16> = Vec::with_capacity(chars.len());
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        index += 1;
        if c != '\\' {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
            continue;
        }
        let Some(&escaped) = chars.get(index) else {
            // Cannot happen after `logical_lines` strips a trailing odd backslash; drop it like the JDK.
            break;
        };
        index += 1;
        let unit = match escaped {
            'u' => {
                let digits = chars
                    .get(index..index + 4)
                    .ok_or_else(|| syntax("malformed \\uxxxx encoding"))?;
                index += 4;
                let mut unit: u16 = 0;
                for digit in digits {
                    let value = digit.to_digit(16).ok_or_else(|| syntax("malformed \\uxxxx encoding"))?;
                    unit = (unit << 4) | value as u16;
                }
                unit
            }
            't' => u16::from(b'\t'),
            'r' => u16::from(b'\r'),
            'n' => u16::from(b'\n'),
            'f' => 0x0c,
            other => {
                let mut buf = [0u16; 2];
                units.extend_from_slice(other.encode_utf16(&mut buf));
                continue;
            }
        };
        units.push(unit);
    }
    String::from_utf16(&units).map_err(|_| syntax("\\u escape leaves an unpaired UTF-16 surrogate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String, usize)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value, e.line))
            .collect()
    }

    fn kv(text: &str) -> Vec<(String, String)> {
        pairs(text).into_iter().map(|(k, v, _)| (k, v)).collect()
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn separators() {
        assert_eq!(
            kv("a=1\nb:2\nc 3\nd\t4\ne = 5\nf : 6\ng   7\nh  =  = 8\ni\nj=\n"),
            owned(&[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "4"),
                ("e", "5"),
                ("f", "6"),
                ("g", "7"),
                ("h", "= 8"),
                ("i", ""),
                ("j", ""),
            ])
        );
    }

    #[test]
    fn value_keeps_later_separators() {
        assert_eq!(
            kv("server.1=h:2888:3888;2181"),
            owned(&[("server.1", "h:2888:3888;2181")])
        );
        assert_eq!(kv("url=http://x:1/a=b"), owned(&[("url", "http://x:1/a=b")]));
    }

    #[test]
    fn comments_and_blank_lines() {
        let text = "# comment\n! also comment\n   # indented comment\n\n  \t \nkey=value # not a comment\n";
        assert_eq!(pairs(text), vec![("key".into(), "value # not a comment".into(), 6)]);
    }

    #[test]
    fn comment_lines_do_not_continue() {
        assert_eq!(kv("# comment \\\na=1\n"), owned(&[("a", "1")]));
    }

    #[test]
    fn continuation_lines() {
        let text = "list = a,\\\n       b,\\\n   # c\nnext=1\n";
        assert_eq!(
            pairs(text),
            vec![("list".into(), "a,b,# c".into(), 1), ("next".into(), "1".into(), 4)]
        );
        // An even number of backslashes is an escaped backslash, not a continuation.
        assert_eq!(kv("a=x\\\\\nb=2"), owned(&[("a", "x\\"), ("b", "2")]));
        // A continuation followed by an empty line ends the logical line there.
        assert_eq!(kv("a=x\\\n\nb=2"), owned(&[("a", "x"), ("b", "2")]));
        // Backslash at end of input is dropped.
        assert_eq!(kv("a=x\\"), owned(&[("a", "x")]));
    }

    #[test]
    fn line_terminators_and_numbers() {
        let text = "a=1\r\nb=2\rc=3\n\r\n\nd=4";
        assert_eq!(
            pairs(text),
            vec![
                ("a".into(), "1".into(), 1),
                ("b".into(), "2".into(), 2),
                ("c".into(), "3".into(), 3),
                ("d".into(), "4".into(), 6),
            ]
        );
        assert_eq!(
            pairs("a=1\\\r\n  2\nb=3"),
            vec![("a".into(), "12".into(), 1), ("b".into(), "3".into(), 3)]
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(
            kv(r"a\=b\:c\ d=x\ty\nz\u0041\\\q\#"),
            owned(&[("a=b:c d", "x\ty\nzA\\q#")])
        );
        assert_eq!(kv(r"k=\uD83D\uDE00"), owned(&[("k", "\u{1F600}")]));
        assert_eq!(kv("\\#notcomment=1"), owned(&[("#notcomment", "1")]));
    }

    #[test]
    fn malformed_escapes() {
        for text in [r"k=\u12", r"k=\u12G4", r"k=\uD83D"] {
            let err = parse(&format!("a=1\n{text}")).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Syntax {
                        location: Location::Line(2),
                        ..
                    }
                ),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn trimming_like_zookeeper() {
        // Properties keeps trailing blanks; ZooKeeper's `trim()` removes them (and control chars).
        assert_eq!(kv("  key  =  value \t \u{1}\n"), owned(&[("key", "value")]));
        // An escaped trailing blank is still trimmed by ZooKeeper.
        assert_eq!(kv("key=value\\ \n"), owned(&[("key", "value")]));
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        assert_eq!(kv("\u{feff}a=1"), owned(&[("a", "1")]));
    }
}
