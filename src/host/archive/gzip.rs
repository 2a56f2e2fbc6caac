//! The gzip writer of dumps: one gzip member made of independently deflated blocks of 1 MiB
//! (as pigz does), deflated on every CPU at once. A block that does not compress is written as
//! stored deflate blocks: a 4-slice probe at level 1 decides, so random or already compressed
//! data costs little more than a copy, and text still shrinks. The file's writeback starts while
//! it grows, so the fsync at the end waits for the tail only. Memory stays bounded: at most
//! `2 × workers + 2` blocks are in flight. On request the SHA-256 of the file is computed from
//! the bytes as they are written, so that nobody has to read the file back for it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use sha2::{Digest, Sha256};

/// The size of an independent block.
const BLOCK: usize = 1 << 20;
/// The probe: this many slices of this size, spread over the block, deflated at level 1.
const PROBE_SLICES: usize = 4;
const PROBE_SLICE: usize = 8 * 1024;
/// Writeback is started every this many bytes written.
const WRITEBACK_STEP: u64 = 8 << 20;

/// One block, ready to be written: deflated, or its input to be written as stored blocks; and
/// the CRC of its input.
struct Encoded {
    bytes: Vec<u8>,
    stored: bool,
    crc: Crc,
}

/// Per worker: the block compressor at the chosen level, and the probe's at level 1.
struct Deflaters {
    main: Compress,
    probe: Compress,
    level: u32,
}

impl Deflaters {
    fn new(level: u32) -> Self {
        Deflaters {
            main: Compress::new(Compression::new(level.max(1)), false),
            probe: Compress::new(Compression::new(1), false),
            level,
        }
    }

    fn encode(&mut self, raw: Vec<u8>) -> Encoded {
        let mut crc = Crc::new();
        crc.update(&raw);
        let deflated = if self.level > 0 && self.worth_deflating(&raw) {
            self.main.reset();
            deflate_within(&mut self.main, &raw, raw.len())
        } else {
            None
        };
        match deflated {
            Some(bytes) => Encoded {
                bytes,
                stored: false,
                crc,
            },
            None => Encoded {
                bytes: raw,
                stored: true,
                crc,
            },
        }
    }

    /// Whether a level-1 deflate of a few slices of the block saves at least 1/16 of them.
    fn worth_deflating(&mut self, raw: &[u8]) -> bool {
        if raw.len() <= PROBE_SLICES * PROBE_SLICE {
            return true;
        }
        let (mut read, mut out) = (0usize, 0usize);
        for i in 0..PROBE_SLICES {
            let at = raw.len() / PROBE_SLICES * i;
            let slice = &raw[at..at + PROBE_SLICE];
            self.probe.reset();
            read += slice.len();
            out += deflate_within(&mut self.probe, slice, slice.len())
                .map_or(slice.len(), |d| d.len());
        }
        out <= read - read / 16
    }
}

/// `raw` deflated as non-final blocks ending on a byte boundary (a sync flush), or None when that
/// takes more than `limit` bytes.
fn deflate_within(c: &mut Compress, raw: &[u8], limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(limit);
    loop {
        let done = c.total_in() as usize;
        let status = c
            .compress_vec(&raw[done..], &mut out, FlushCompress::Sync)
            .ok()?;
        if out.len() == out.capacity() {
            return None;
        }
        if c.total_in() as usize == raw.len() || status != Status::Ok {
            return (c.total_in() as usize == raw.len()).then_some(out);
        }
    }
}

/// Writes a file, asking the kernel to start writing back each step as soon as it is complete;
/// and hashes what it writes when asked to.
struct Writeback {
    file: File,
    written: u64,
    kicked: u64,
    sha: Option<Sha256>,
}

impl Writeback {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        if let Some(sha) = &mut self.sha {
            sha.update(bytes);
        }
        self.wrote(bytes.len())
    }

    /// `raw` as stored deflate blocks (none final), 5 bytes of header per 64 KiB, written from
    /// where it is with one writev.
    fn write_stored(&mut self, raw: &[u8]) -> io::Result<()> {
        let headers: Vec<[u8; 5]> = raw
            .chunks(65535)
            .map(|part| {
                let n = (part.len() as u16).to_le_bytes();
                let m = (!(part.len() as u16)).to_le_bytes();
                // BFINAL=0, BTYPE=00 (stored), padded to the byte; LEN; NLEN.
                [0, n[0], n[1], m[0], m[1]]
            })
            .collect();
        let mut slices: Vec<IoSlice> = headers
            .iter()
            .zip(raw.chunks(65535))
            .flat_map(|(h, part)| [IoSlice::new(h), IoSlice::new(part)])
            .collect();
        if let Some(sha) = &mut self.sha {
            slices.iter().for_each(|s| sha.update(&s[..]));
        }
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = self.file.write_vectored(rest)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        self.wrote(raw.len() + headers.len() * 5)
    }

    fn wrote(&mut self, n: usize) -> io::Result<()> {
        self.written += n as u64;
        if self.written - self.kicked >= WRITEBACK_STEP {
            // SAFETY: a plain syscall on an open descriptor; a failure only means no early
            // writeback, and the fsync at the end still makes the file durable.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.kicked as libc::off64_t,
                    (self.written - self.kicked) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.kicked = self.written;
        }
        Ok(())
    }
}

/// Writes every chunk of `chunks` to `file` as one gzip member at `level` (0: stored only;
/// 1-9: deflate, blocks that do not compress stored), then fsyncs the file. `workers` threads
/// deflate (at least 1). With `hash`, returns the SHA-256 of the file (hex), computed as it is
/// written.
pub fn write(
    chunks: impl Iterator<Item = super::Batch>,
    file: File,
    level: u32,
    workers: usize,
    hash: bool,
) -> io::Result<Option<String>> {
    let workers = workers.max(1);
    let (job_tx, job_rx) = sync_channel::<(Vec<u8>, SyncSender<Encoded>)>(workers);
    let job_rx = Mutex::new(job_rx);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let job_rx = &job_rx;
            scope.spawn(move || {
                let mut d = Deflaters::new(level);
                loop {
                    let job = job_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((raw, done))) = job else { break };
                    if done.send(d.encode(raw)).is_err() {
                        break;
                    }
                }
            });
        }
        // write_blocks drops the job sender, however it ends: the workers end, scope joins them.
        write_blocks(chunks, file, job_tx, workers, hash)
    })
}

/// The ordered end of the pipeline: blocks go to the workers in order and are written in order.
struct Blocks {
    out: Writeback,
    crc: Crc,
    jobs: SyncSender<(Vec<u8>, SyncSender<Encoded>)>,
    pending: VecDeque<Receiver<Encoded>>,
    in_flight: usize,
}

impl Blocks {
    fn send(&mut self, raw: Vec<u8>) -> io::Result<()> {
        let (done_tx, done_rx) = sync_channel(1);
        self.jobs.send((raw, done_tx)).map_err(|_| stopped())?;
        self.pending.push_back(done_rx);
        while self.pending.len() > self.in_flight {
            self.write_next()?;
        }
        Ok(())
    }

    fn write_next(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else {
            return Ok(());
        };
        let block = rx.recv().map_err(|_| stopped())?;
        self.crc.combine(&block.crc);
        if block.stored {
            self.out.write_stored(&block.bytes)
        } else {
            self.out.write_all(&block.bytes)
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("a compression thread stopped")
}

fn write_blocks(
    chunks: impl Iterator<Item = super::Batch>,
    file: File,
    jobs: SyncSender<(Vec<u8>, SyncSender<Encoded>)>,
    workers: usize,
    hash: bool,
) -> io::Result<Option<String>> {
    let mut b = Blocks {
        out: Writeback {
            file,
            written: 0,
            kicked: 0,
            sha: hash.then(Sha256::new),
        },
        crc: Crc::new(),
        jobs,
        pending: VecDeque::new(),
        in_flight: 2 * workers + 1,
    };
    // gzip header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
    b.out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
    let mut cur: Vec<u8> = Vec::with_capacity(BLOCK);
    for chunk in chunks.flat_map(|batch| (*batch).clone()) {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let take = rest.len().min(BLOCK - cur.len());
            cur.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if cur.len() == BLOCK {
                b.send(std::mem::replace(&mut cur, Vec::with_capacity(BLOCK)))?;
            }
        }
    }
    if !cur.is_empty() {
        b.send(cur)?;
    }
    while !b.pending.is_empty() {
        b.write_next()?;
    }
    let Blocks { mut out, crc, .. } = b; // the job sender goes: the workers end
    out.write_all(&[1, 0, 0, 0xff, 0xff])?; // the final, empty stored block
    out.write_all(&crc.sum().to_le_bytes())?;
    out.write_all(&crc.amount().to_le_bytes())?;
    out.file.sync_all()?;
    Ok(out.sha.map(|sha| hex::encode(sha.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(data: &[u8], level: u32, chunk: usize) -> (Vec<u8>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gz");
        let (tx, rx) = sync_channel(4);
        let file = File::create(&path).unwrap();
        let owned = data.to_vec();
        let feeder = std::thread::spawn(move || {
            for c in owned.chunks(chunk) {
                let batch = vec![bytes::Bytes::copy_from_slice(c)];
                tx.send(std::sync::Arc::new(batch)).unwrap();
            }
        });
        let sha = write(rx.into_iter(), file, level, 2, true).unwrap();
        feeder.join().unwrap();
        let gz = std::fs::read(&path).unwrap();
        // The hash made while writing is the file's.
        assert_eq!(sha.unwrap(), hex::encode(Sha256::digest(&gz)));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        (back, gz.len())
    }

    fn random(n: usize) -> Vec<u8> {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn random_text_and_mixed_data_round_trip_at_every_kind_of_level() {
        let text: Vec<u8> = (0..400_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let rand = random(3 * BLOCK + 12345);
        let mixed: Vec<u8> = [&text[..], &rand[..], &text[..]].concat();
        for data in [&text, &rand, &mixed, &Vec::new()] {
            for level in [0, 1, 6] {
                let (back, _) = roundtrip(data, level, 32 * 1024 + 7);
                assert!(back == *data, "level {level}, {} bytes", data.len());
            }
        }
        // Text shrinks (probe says deflate), random data is stored (a few bytes per 64 KiB).
        assert!(roundtrip(&text, 1, 65536).1 < text.len() / 2);
        let (_, n) = roundtrip(&rand, 1, 65536);
        assert!(n <= rand.len() + rand.len() / 65535 * 5 + 64, "{n}");
    }
}
