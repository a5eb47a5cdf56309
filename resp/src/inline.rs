//! Splitting an inline request line into arguments, with Redis's quoting:
//! `"..."` (with `\n \r \t \b \a \\ \" \xHH` escapes) and `'...'` (with `\'`).

use crate::error::FrameError;

fn unbalanced() -> FrameError {
    FrameError::Invalid("unbalanced quotes in request".into())
}

/// Splits one inline line (without its line ending) into arguments.
pub fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return Ok(args);
        }
        let mut current = Vec::new();
        while let Some(&c) = line.get(i) {
            match c {
                b'"' => i = double_quoted(line, i + 1, &mut current)?,
                b'\'' => i = single_quoted(line, i + 1, &mut current)?,
                c if c.is_ascii_whitespace() => break,
                c => {
                    current.push(c);
                    i += 1;
                }
            }
        }
        args.push(current);
    }
}

/// A closing quote must end the argument.
fn after_quote(line: &[u8], i: usize) -> Result<usize, FrameError> {
    match line.get(i) {
        None => Ok(i),
        Some(c) if c.is_ascii_whitespace() => Ok(i),
        Some(_) => Err(unbalanced()),
    }
}

fn double_quoted(line: &[u8], mut i: usize, out: &mut Vec<u8>) -> Result<usize, FrameError> {
    loop {
        match line.get(i) {
            None => return Err(unbalanced()),
            Some(b'"') => return after_quote(line, i + 1),
            Some(b'\\') if i + 3 < line.len() && line[i + 1] == b'x' => {
                let hex = std::str::from_utf8(&line[i + 2..i + 4])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 4;
                    }
                    None => {
                        out.push(b'x');
                        i += 2;
                    }
                }
            }
            Some(b'\\') if i + 1 < line.len() => {
                out.push(match line[i + 1] {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => other,
                });
                i += 2;
            }
            Some(&c) => {
                out.push(c);
                i += 1;
            }
        }
    }
}

fn single_quoted(line: &[u8], mut i: usize, out: &mut Vec<u8>) -> Result<usize, FrameError> {
    loop {
        match line.get(i) {
            None => return Err(unbalanced()),
            Some(b'\'') => return after_quote(line, i + 1),
            Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                out.push(b'\'');
                i += 2;
            }
            Some(&c) => {
                out.push(c);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_args;

    #[test]
    fn quoting_like_redis() {
        assert_eq!(
            split_args(b"SET q \"a b\\x41\"").unwrap(),
            vec![b"SET".to_vec(), b"q".to_vec(), b"a bA".to_vec()]
        );
        assert_eq!(
            split_args(b"GET 'it\\'s'").unwrap(),
            vec![b"GET".to_vec(), b"it's".to_vec()]
        );
        assert_eq!(split_args(b"  PING  ").unwrap(), vec![b"PING".to_vec()]);
        assert!(split_args(b"SET k \"unbalanced").is_err());
        assert!(split_args(b"SET k \"a\"b").is_err());
        assert!(split_args(b"").unwrap().is_empty());
    }
}
