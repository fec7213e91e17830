//! Training data from the user's own files: text (`[task] kind = "text"`, byte- or
//! character-level) and pre-tokenized token files (`kind = "tokens"`, the flat little-endian
//! `u16`/`u32` arrays nanoGPT-style pipelines write).
//!
//! Files are memory-mapped, never read into memory: a window of `seq_len + 1` tokens is
//! copied out of the map when a batch is drawn, so a run's resident memory does not grow
//! with the corpus. (The `chars` tokenizer is the exception: characters have no fixed width,
//! so their ids are decoded into memory once — it is meant for small corpora.) Several text
//! files are concatenated with a separator token between them (byte 0 for `bytes`).
//!
//! Everything is checked before training starts, and each error names the file: a missing
//! or empty file, a token file whose length is not a multiple of its dtype, a token at or
//! above `vocab_size` (with the offset of the first), a split too short for `seq_len`.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

mod paths;
use paths::resolve;
pub use paths::{FileStamp, expand_path, stamps};

/// How text becomes token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tokenizer {
    /// One token per byte (vocabulary 256); files are joined by byte 0.
    #[default]
    Bytes,
    /// One token per character of the training split's alphabet (sorted); files are joined
    /// by `\n`, and a held-out character outside the alphabet is an error.
    Chars,
}

/// Element type of a token file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    U16,
    U32,
}

impl Dtype {
    /// Bytes per token.
    pub fn width(self) -> usize {
        match self {
            Dtype::U16 => 2,
            Dtype::U32 => 4,
        }
    }
}

/// A data problem found before training, naming the file and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DataError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, DataError> {
    Err(DataError(msg.into()))
}

/// One file's tokens.
#[derive(Debug)]
enum Piece {
    /// A memory map read `width` bytes per token, little-endian.
    Mapped { map: Mmap, width: usize },
    /// Character ids decoded once (the `chars` tokenizer).
    Owned(Vec<u32>),
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Mapped { map, width } => map.len() / width,
            Piece::Owned(v) => v.len(),
        }
    }

    /// Unmaps the pages of tokens `lo..hi` once they are copied out. Without it every
    /// page a window touched — and the neighbours the kernel maps around each fault, 64 KiB
    /// at a time — would stay in the run's resident memory, which would grow towards the
    /// file's size over a long run. The data stays in the page cache for the next read.
    fn release(&self, lo: usize, hi: usize) {
        #[cfg(unix)]
        if let Piece::Mapped { map, width } = self {
            // SAFETY: the map is a read-only shared file mapping and no reference into it
            // outlives a `copy`; dropped pages are faulted back in from the file on the next
            // access (concurrent readers included), with the same contents.
            // The whole fault-around block (64 KiB by default) around the window.
            const AROUND: usize = 64 << 10;
            let from = (lo * width) / AROUND * AROUND;
            let to = ((hi * width).div_ceil(AROUND) * AROUND).min(map.len());
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from)
            };
        }
    }

    fn token(&self, i: usize) -> u32 {
        match self {
            Piece::Mapped { map, width: 1 } => map[i] as u32,
            Piece::Mapped { map, width: 2 } => {
                u16::from_le_bytes([map[2 * i], map[2 * i + 1]]) as u32
            }
            Piece::Mapped { map, .. } => {
                u32::from_le_bytes(map[4 * i..4 * i + 4].try_into().expect("4 bytes"))
            }
            Piece::Owned(v) => v[i],
        }
    }
}

/// Files as one token sequence, with `separator` between consecutive files.
#[derive(Debug)]
struct Stream {
    pieces: Vec<Piece>,
    /// Where each piece starts in the joined sequence.
    starts: Vec<usize>,
    total: usize,
    separator: u32,
}

impl Stream {
    fn new(pieces: Vec<Piece>, separator: u32) -> Stream {
        let mut starts = Vec::with_capacity(pieces.len());
        let mut at = 0;
        for (i, p) in pieces.iter().enumerate() {
            if i > 0 {
                at += 1; // the separator
            }
            starts.push(at);
            at += p.len();
        }
        Stream {
            pieces,
            starts,
            total: at,
            separator,
        }
    }

    /// Appends tokens `start..start + n` of the joined sequence to `out`.
    fn copy(&self, start: usize, n: usize, out: &mut Vec<i64>) {
        let mut i = start;
        let end = start + n;
        while i < end {
            let k = self.starts.partition_point(|&s| s <= i) - 1;
            let (p, s) = (&self.pieces[k], self.starts[k]);
            if i >= s + p.len() {
                out.push(self.separator as i64); // between piece k and k + 1
                i += 1;
                continue;
            }
            let stop = end.min(s + p.len());
            out.extend((i - s..stop - s).map(|j| p.token(j) as i64));
            p.release(i - s, stop - s);
            i = stop;
        }
    }
}

/// A range of a stream: the training or the held-out split.
#[derive(Debug, Clone)]
struct Split {
    stream: Arc<Stream>,
    lo: usize,
    hi: usize,
}

impl Split {
    fn len(&self) -> usize {
        self.hi - self.lo
    }
}

/// What a run trained on, for its record: paths, sizes, tokens, tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// `text (bytes)`, `text (chars)`, `tokens (u16)`.
    pub format: String,
    /// The training files as resolved (absolute where they were relative).
    pub files: Vec<PathBuf>,
    /// Held-out files (`val_path`); empty when the split is the last `val_fraction`.
    pub val_files: Vec<PathBuf>,
    pub bytes: u64,
    pub train_tokens: usize,
    pub valid_tokens: usize,
    pub vocab_size: usize,
}

/// A corpus ready to draw windows from.
#[derive(Debug, Clone)]
pub struct Corpus {
    train: Split,
    valid: Split,
    vocab: usize,
    /// The `chars` tokenizer's alphabet, in id order.
    pub alphabet: Option<Arc<Vec<char>>>,
    pub summary: DataSummary,
}

/// What `[task]` says about the data (see [`crate::tasks::TaskSection`]).
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub path: &'a str,
    pub val_path: Option<&'a str>,
    pub val_fraction: f64,
    /// `Some` for text, `None` for token files.
    pub tokenizer: Option<Tokenizer>,
    pub dtype: Option<Dtype>,
    /// 0 for text means "what the tokenizer needs".
    pub vocab_size: usize,
}

impl Corpus {
    /// Opens, maps and checks the files.
    pub fn open(src: Source) -> Result<Corpus, DataError> {
        let files = resolve(src.path, "task.path")?;
        let val_files = src
            .val_path
            .map(|p| resolve(p, "task.val_path"))
            .transpose()?
            .unwrap_or_default();
        let (stream, val_stream, vocab, alphabet, format) = match (src.tokenizer, src.dtype) {
            (Some(Tokenizer::Bytes), _) => {
                let vocab = if src.vocab_size == 0 {
                    256
                } else {
                    src.vocab_size
                };
                if vocab < 256 {
                    return err(format!(
                        "task.vocab_size = {vocab} is too small for the bytes tokenizer (256)"
                    ));
                }
                let open = |fs: &[PathBuf]| -> Result<Stream, DataError> {
                    let pieces = fs
                        .iter()
                        .map(|f| map_file(f, 1))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(Stream::new(pieces, 0))
                };
                let val = (!val_files.is_empty())
                    .then(|| open(&val_files))
                    .transpose()?;
                (open(&files)?, val, vocab, None, "text (bytes)".to_string())
            }
            (Some(Tokenizer::Chars), _) => {
                let (stream, val, alphabet) = open_chars(&files, &val_files, src.val_fraction)?;
                let vocab = if src.vocab_size == 0 {
                    alphabet.len()
                } else {
                    src.vocab_size
                };
                if vocab < alphabet.len() {
                    return err(format!(
                        "task.vocab_size = {vocab} is smaller than the training text's alphabet ({} characters)",
                        alphabet.len()
                    ));
                }
                (
                    stream,
                    val,
                    vocab,
                    Some(Arc::new(alphabet)),
                    "text (chars)".into(),
                )
            }
            (None, Some(dtype)) => {
                let vocab = src.vocab_size;
                let open = |fs: &[PathBuf]| -> Result<Stream, DataError> {
                    let mut pieces = Vec::new();
                    for f in fs {
                        let piece = map_file(f, dtype.width())?;
                        check_tokens(f, dtype, vocab)?;
                        pieces.push(piece);
                    }
                    // Token files carry their own separators (e.g. an end-of-text id).
                    Ok(Stream::new(pieces, 0))
                };
                if files.len() > 1 {
                    return err(format!(
                        "task.path matches {} token files; give one file per split (path, val_path)",
                        files.len()
                    ));
                }
                let val = (!val_files.is_empty())
                    .then(|| open(&val_files))
                    .transpose()?;
                let name = format!(
                    "tokens ({})",
                    if dtype == Dtype::U16 { "u16" } else { "u32" }
                );
                (open(&files)?, val, vocab, None, name)
            }
            (None, None) => return err("task.dtype is required for kind = \"tokens\""),
        };
        let bytes = files
            .iter()
            .chain(&val_files)
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum();
        let stream = Arc::new(stream);
        let (train, valid) = match val_stream {
            Some(v) => {
                let v = Arc::new(v);
                (
                    Split {
                        hi: stream.total,
                        stream,
                        lo: 0,
                    },
                    Split {
                        hi: v.total,
                        stream: v,
                        lo: 0,
                    },
                )
            }
            None => {
                let held = ((stream.total as f64) * src.val_fraction).round() as usize;
                let cut = stream.total - held.min(stream.total);
                (
                    Split {
                        stream: stream.clone(),
                        lo: 0,
                        hi: cut,
                    },
                    Split {
                        hi: stream.total,
                        stream,
                        lo: cut,
                    },
                )
            }
        };
        let name = |fs: &[PathBuf]| {
            fs.iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if train.len() == 0 {
            return err(format!("{}: the training split is empty", name(&files)));
        }
        if valid.len() == 0 {
            let what = if val_files.is_empty() {
                format!(
                    "{}: the held-out split (the last task.val_fraction = {}) is empty",
                    name(&files),
                    src.val_fraction
                )
            } else {
                format!("{}: the held-out split is empty", name(&val_files))
            };
            return err(what);
        }
        Ok(Corpus {
            summary: DataSummary {
                format,
                files,
                val_files,
                bytes,
                train_tokens: train.len(),
                valid_tokens: valid.len(),
                vocab_size: vocab,
            },
            train,
            valid,
            vocab,
            alphabet,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// Tokens in the (training, held-out) splits.
    pub fn split_lens(&self) -> (usize, usize) {
        (self.train.len(), self.valid.len())
    }

    /// Refuses lengths whose windows (`len + 1` tokens) do not fit in a split.
    pub fn check_len(&self, key: &str, len: usize) -> Result<(), DataError> {
        for (split, what) in [(&self.train, "training"), (&self.valid, "held-out")] {
            if len + 1 > split.len() {
                return err(format!(
                    "{key}: a window of {len} + 1 tokens is longer than the {what} split ({} tokens)",
                    split.len()
                ));
            }
        }
        Ok(())
    }

    /// A window of `len + 1` tokens at a random offset of a split: inputs are the first
    /// `len`, targets the last `len`.
    pub fn window(
        &self,
        rng: &mut crate::tasks::Rng,
        len: usize,
        valid: bool,
        inputs: &mut Vec<i64>,
        targets: &mut Vec<i64>,
    ) {
        let split = if valid { &self.valid } else { &self.train };
        let start = split.lo + rng.below(split.len() - len);
        let mut w = Vec::with_capacity(len + 1);
        split.stream.copy(start, len + 1, &mut w);
        inputs.extend_from_slice(&w[..len]);
        targets.extend_from_slice(&w[1..]);
    }

    /// Text for ids (the `chars` alphabet, or bytes read as UTF-8 with replacements).
    pub fn decode(&self, ids: &[i64]) -> Option<String> {
        match (&self.alphabet, self.summary.format.as_str()) {
            (Some(a), _) => Some(
                ids.iter()
                    .map(|&i| a.get(i as usize).copied().unwrap_or('?'))
                    .collect(),
            ),
            (None, "text (bytes)") => {
                let bytes: Vec<u8> = ids.iter().map(|&i| i.clamp(0, 255) as u8).collect();
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            _ => None,
        }
    }
}

fn map_file(path: &Path, width: usize) -> Result<Piece, DataError> {
    let file =
        std::fs::File::open(path).map_err(|e| DataError(format!("{}: {e}", path.display())))?;
    let len = file
        .metadata()
        .map_err(|e| DataError(format!("{}: {e}", path.display())))?
        .len();
    if len == 0 {
        return err(format!("{}: the file is empty", path.display()));
    }
    if len % width as u64 != 0 {
        return err(format!(
            "{}: {len} bytes is not a whole number of {}-byte tokens (wrong dtype, or a truncated file?)",
            path.display(),
            width
        ));
    }
    // SAFETY: the map is read-only; a file changed under a running training run gives wrong
    // tokens for that run, not memory unsafety in this process's own allocations.
    let map =
        unsafe { Mmap::map(&file) }.map_err(|e| DataError(format!("{}: {e}", path.display())))?;
    // Windows are read at random offsets: without this, each fault reads ahead and maps
    // neighbouring pages too, and resident memory grows by far more than the windows read.
    #[cfg(unix)]
    let _ = map.advise(memmap2::Advice::Random);
    Ok(Piece::Mapped { map, width })
}

/// Scans a token file once for an id at or above the vocabulary. It reads the file rather
/// than the map: pages touched through the map would count in the run's resident memory for
/// as long as the map lives, and this pass touches every page.
fn check_tokens(path: &Path, dtype: Dtype, vocab: usize) -> Result<(), DataError> {
    use std::io::Read;
    let io = |e: std::io::Error| DataError(format!("{}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(io)?;
    let width = dtype.width();
    let mut buf = vec![0u8; (1 << 20) / width * width];
    let mut offset = 0usize; // tokens before `buf`
    loop {
        // Fill whole tokens: `read` may stop anywhere.
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]).map_err(io)? {
                0 => break,
                n => filled += n,
            }
        }
        let tokens = filled / width;
        for (i, chunk) in buf[..tokens * width].chunks_exact(width).enumerate() {
            let token = match dtype {
                Dtype::U16 => u16::from_le_bytes([chunk[0], chunk[1]]) as u32,
                Dtype::U32 => u32::from_le_bytes(chunk.try_into().expect("4 bytes")),
            };
            if token as usize >= vocab {
                let at = offset + i;
                return err(format!(
                    "{}: token {token} at offset {at} (byte {}) is not below task.vocab_size = {vocab}",
                    path.display(),
                    at * width
                ));
            }
        }
        offset += tokens;
        if filled < buf.len() {
            return Ok(());
        }
    }
}

type CharsOpened = (Stream, Option<Stream>, Vec<char>);

/// The `chars` tokenizer: the alphabet of the training text, ids decoded once.
fn open_chars(
    files: &[PathBuf],
    val_files: &[PathBuf],
    val_fraction: f64,
) -> Result<CharsOpened, DataError> {
    let read = |f: &PathBuf| -> Result<String, DataError> {
        let bytes = std::fs::read(f).map_err(|e| DataError(format!("{}: {e}", f.display())))?;
        if bytes.is_empty() {
            return err(format!("{}: the file is empty", f.display()));
        }
        String::from_utf8(bytes).map_err(|e| {
            DataError(format!(
                "{}: not UTF-8 text at byte {} (use tokenizer = \"bytes\" for other encodings)",
                f.display(),
                e.utf8_error().valid_up_to()
            ))
        })
    };
    let texts = files.iter().map(read).collect::<Result<Vec<_>, _>>()?;
    let vals = val_files.iter().map(read).collect::<Result<Vec<_>, _>>()?;
    // The alphabet comes from the training split only: with a fractional split, that is the
    // joined text up to the cut.
    let joined: Vec<char> = texts.join("\n").chars().collect();
    let train_chars = if vals.is_empty() {
        let held = ((joined.len() as f64) * val_fraction).round() as usize;
        &joined[..joined.len() - held.min(joined.len())]
    } else {
        &joined[..]
    };
    let mut alphabet: Vec<char> = train_chars.to_vec();
    alphabet.sort_unstable();
    alphabet.dedup();
    let ids = |text: &[char], file: &str| -> Result<Vec<u32>, DataError> {
        text.iter()
            .enumerate()
            .map(|(i, c)| {
                alphabet
                    .binary_search(c)
                    .map(|k| k as u32)
                    .map_err(|_| DataError(format!("{file}: character {c:?} at character {i} is not in the training text's alphabet")))
            })
            .collect()
    };
    let names = |fs: &[PathBuf]| {
        fs.iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let stream = Stream::new(vec![Piece::Owned(ids(&joined, &names(files))?)], 0);
    let val = if vals.is_empty() {
        None
    } else {
        let v: Vec<char> = vals.join("\n").chars().collect();
        Some(Stream::new(
            vec![Piece::Owned(ids(&v, &names(val_files))?)],
            0,
        ))
    };
    Ok((stream, val, alphabet))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::Rng;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("labbook-data-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn text_source(path: &str) -> Source<'_> {
        Source {
            path,
            val_path: None,
            val_fraction: 0.25,
            tokenizer: Some(Tokenizer::Bytes),
            dtype: None,
            vocab_size: 0,
        }
    }

    #[test]
    fn files_of_a_directory_are_joined_by_the_separator() {
        let d = tmp("join");
        std::fs::write(d.join("a.txt"), "abcd").unwrap();
        std::fs::write(d.join("b.txt"), "efgh").unwrap();
        let c = Corpus::open(text_source(d.to_str().unwrap())).unwrap();
        // 4 + 1 + 4 tokens; the last quarter (2) held out.
        assert_eq!(c.split_lens(), (7, 2));
        let mut all = Vec::new();
        c.train.stream.copy(0, 9, &mut all);
        assert_eq!(
            all,
            b"abcd\0efgh".iter().map(|&b| b as i64).collect::<Vec<_>>()
        );
        assert_eq!(c.vocab_size(), 256);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn windows_shift_targets_by_one_and_stay_in_their_split() {
        let d = tmp("win");
        let text: String = (0..400).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        std::fs::write(d.join("t.txt"), &text).unwrap();
        let c = Corpus::open(text_source(d.join("t.txt").to_str().unwrap())).unwrap();
        let mut rng = Rng::new(1, 2);
        for valid in [false, true] {
            for _ in 0..50 {
                let (mut x, mut y) = (Vec::new(), Vec::new());
                c.window(&mut rng, 16, valid, &mut x, &mut y);
                assert_eq!(x[1..], y[..15]);
                // Consecutive letters: the next letter follows each input.
                for (a, b) in x.iter().zip(&y) {
                    assert_eq!((a - b'a' as i64 + 1) % 26, b - b'a' as i64);
                }
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn u16_tokens_round_trip_and_bad_ones_are_named() {
        let d = tmp("tok");
        // Token i is i, so a window's first input is its offset.
        let ids: Vec<u16> = (0..1000).collect();
        let bytes: Vec<u8> = ids.iter().flat_map(|t| t.to_le_bytes()).collect();
        std::fs::write(d.join("train.bin"), &bytes).unwrap();
        let path = format!("{}/train.bin", d.display());
        let src = Source {
            path: &path,
            val_path: None,
            val_fraction: 0.1,
            tokenizer: None,
            dtype: Some(Dtype::U16),
            vocab_size: 1000,
        };
        let c = Corpus::open(src).unwrap();
        let mut back = Vec::new();
        c.train.stream.copy(0, 1000, &mut back);
        assert_eq!(back, (0..1000).collect::<Vec<i64>>());
        assert_eq!(c.split_lens(), (900, 100));
        let mut rng = Rng::new(5, 0);
        for valid in [false, true] {
            for _ in 0..300 {
                let (mut x, mut y) = (Vec::new(), Vec::new());
                c.window(&mut rng, 10, valid, &mut x, &mut y);
                let at = x[0] as usize;
                assert_eq!(x, (at as i64..at as i64 + 10).collect::<Vec<_>>());
                assert_eq!(y[9], at as i64 + 10);
                if valid {
                    assert!((900..=989).contains(&at), "held-out window at {at}");
                } else {
                    assert!(
                        at + 11 <= 900,
                        "training window at {at} reaches held-out data"
                    );
                }
            }
        }
        let e = Corpus::open(Source {
            vocab_size: 999,
            ..src
        })
        .unwrap_err();
        assert!(e.0.contains("token 999 at offset 999 (byte 1998)"), "{e}");
        // Past the scan's first 1 MiB buffer: the offset counts the buffers before it.
        let mut big: Vec<u16> = (0..1_500_000).map(|i| (i % 1000) as u16).collect();
        big[1_234_567] = 1000;
        let bytes: Vec<u8> = big.iter().flat_map(|t| t.to_le_bytes()).collect();
        std::fs::write(d.join("big.bin"), &bytes).unwrap();
        let bigp = format!("{}/big.bin", d.display());
        let e = Corpus::open(Source { path: &bigp, ..src }).unwrap_err();
        assert!(
            e.0.contains("token 1000 at offset 1234567 (byte 2469134)"),
            "{e}"
        );
        std::fs::write(d.join("odd.bin"), [1u8, 2, 3]).unwrap();
        let odd = format!("{}/odd.bin", d.display());
        let e = Corpus::open(Source { path: &odd, ..src }).unwrap_err();
        assert!(
            e.0.contains("odd.bin: 3 bytes is not a whole number of 2-byte tokens"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_empty_and_short_data_are_refused_by_name() {
        let d = tmp("bad");
        let e = Corpus::open(text_source(&format!("{}/nope.txt", d.display()))).unwrap_err();
        assert!(e.0.contains("nope.txt: no such file (task.path)"), "{e}");
        std::fs::write(d.join("empty.txt"), "").unwrap();
        let e = Corpus::open(text_source(&format!("{}/empty.txt", d.display()))).unwrap_err();
        assert!(e.0.contains("empty.txt: the file is empty"), "{e}");
        std::fs::write(d.join("short.txt"), "0123456789abcdef").unwrap();
        let c = Corpus::open(text_source(&format!("{}/short.txt", d.display()))).unwrap();
        let e = c.check_len("task.seq_len", 8).unwrap_err();
        assert!(
            e.0.contains("longer than the held-out split (4 tokens)"),
            "{e}"
        );
        assert!(c.check_len("task.seq_len", 3).is_ok());
        let e = Corpus::open(text_source("$LABBOOK_SURELY_UNSET_VAR/x.txt")).unwrap_err();
        assert!(e.0.contains("LABBOOK_SURELY_UNSET_VAR is not set"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn chars_use_the_training_alphabet_and_refuse_unseen_held_out_characters() {
        let d = tmp("chars");
        std::fs::write(d.join("train.txt"), "abcabcabc").unwrap();
        std::fs::write(d.join("val.txt"), "abz").unwrap();
        let src = Source {
            path: "",
            val_path: None,
            val_fraction: 0.0,
            tokenizer: Some(Tokenizer::Chars),
            dtype: None,
            vocab_size: 0,
        };
        let train = format!("{}/train.txt", d.display());
        let val = format!("{}/val.txt", d.display());
        let e = Corpus::open(Source {
            path: &train,
            val_path: Some(&val),
            ..src
        })
        .unwrap_err();
        assert!(e.0.contains("val.txt: character 'z' at character 2"), "{e}");
        std::fs::write(d.join("val.txt"), "cab").unwrap();
        let c = Corpus::open(Source {
            path: &train,
            val_path: Some(&val),
            ..src
        })
        .unwrap();
        assert_eq!(c.vocab_size(), 3);
        assert_eq!(c.decode(&[2, 0, 1]).unwrap(), "cab");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
