//! The bans record: the bans a restarted node keeps ([`murmur_protocol::engine::Engine::bans_kept`]).
//!
//! One line per change, appended and synced before the node goes on: `<peer key hex> <reason>`
//! records a ban, `<peer key hex> -` its end. Read back in order, the last line of a key wins.
//! A change costs one line, not the whole record: a peer that has itself banned over and over
//! (a fresh key per connection) cannot make each ban rewrite thousands of lines. The file is
//! rewritten whole (through a temporary file, then renamed) when it holds more than twice the
//! lines of the bans it records, plus [`SLACK`], so it stays within a few times their size.
//!
//! A write that fails is reported to the caller (the node stops on it, naming the file); the
//! record is then as it was, or ends in a cut line, and the next write rewrites it whole.
//!
//! A crash may cut the last line short. Such a line (no newline at its end) that does not read
//! is left out, and the file is rewritten before anything is appended to it; every complete line
//! must read, or the node refuses to start and names the file and the line.

use super::Error;
use super::start::{invalid, read_text};
use murmur_protocol::engine::Rejection;
use murmur_protocol::sign::PeerKey;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Lines beyond twice the bans recorded before the record is rewritten whole.
const SLACK: usize = 64;

/// What ends a ban's line.
const ENDED: &str = "-";

/// [`BansFile::lines`] after a failed write: past any bound, so the next call rewrites the
/// record whole.
const BROKEN: usize = usize::MAX / 2;

/// The bans record of one node, as last written.
#[derive(Debug)]
pub struct BansFile {
    path: PathBuf,
    written: BTreeMap<PeerKey, Rejection>,
    /// Lines in the file.
    lines: usize,
}

impl BansFile {
    /// Reads the record at `path` (a missing file is no bans), rewriting it first if a crash
    /// cut its last line short. Returns it and the bans it records, in key order.
    pub fn open(path: &Path) -> Result<(BansFile, Vec<(PeerKey, Rejection)>), Error> {
        let text = read_text(path)?.unwrap_or_default();
        let mut written = BTreeMap::new();
        let mut lines = 0;
        let cut = !text.is_empty() && !text.ends_with('\n');
        let count = text.lines().count();
        for (n, line) in text.lines().enumerate() {
            lines += 1;
            if line.trim().is_empty() {
                continue;
            }
            match parse(line) {
                Ok((key, Some(reason))) => {
                    written.insert(key, reason);
                }
                Ok((key, None)) => {
                    written.remove(&key);
                }
                // Cut short by a crash: what it was about to record is lost, nothing else.
                Err(_) if cut && n + 1 == count => {}
                Err(why) => {
                    return Err(invalid(path, format!("line {}: {why}: {line:?}", n + 1)));
                }
            }
        }
        let mut file = BansFile {
            path: path.to_owned(),
            written,
            lines,
        };
        if cut {
            file.rewrite()?;
        }
        let bans = file.written.iter().map(|(k, r)| (*k, *r)).collect();
        Ok((file, bans))
    }

    /// Records `kept` (the bans in force that a restart keeps): appends a line for each ban that
    /// is new or changed its reason and one for each that ended, synced; nothing if none did.
    pub fn record(&mut self, kept: &[(PeerKey, Rejection)]) -> Result<(), Error> {
        let now: BTreeMap<PeerKey, Rejection> = kept.iter().copied().collect();
        let mut text = String::new();
        for (key, reason) in &now {
            if self.written.get(key) != Some(reason) {
                text.push_str(&line(key, reason.as_str()));
            }
        }
        for key in self.written.keys().filter(|k| !now.contains_key(k)) {
            text.push_str(&line(key, ENDED));
        }
        // After a failed write, the record is rewritten whole even if nothing changed since.
        if text.is_empty() && self.lines < BROKEN {
            return Ok(());
        }
        let added = text.lines().count();
        let before = std::mem::replace(&mut self.written, now);
        if self.lines + added > 2 * self.written.len() + SLACK {
            return self.rewrite();
        }
        let appended = self.append(&text);
        match appended {
            Ok(()) => self.lines += added,
            // Part of the text may be in the file, its last line cut: the next change rewrites
            // the record whole rather than append to it, and records these again.
            Err(_) => {
                self.written = before;
                self.lines = BROKEN;
            }
        }
        appended
    }

    /// Appends `text` to the file, synced (and the file's entry in its directory, if new).
    fn append(&self, text: &str) -> Result<(), Error> {
        let io = |e| Error::Io(self.path.clone(), e);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)?;
        if self.lines == 0 {
            crate::identity::sync_dir(&self.path).map_err(io)?;
        }
        Ok(())
    }

    /// Writes the bans recorded, one line each, in place of the file. If that fails the file
    /// is as it was, and the next change tries again.
    fn rewrite(&mut self) -> Result<(), Error> {
        let text: String = self
            .written
            .iter()
            .map(|(k, r)| line(k, r.as_str()))
            .collect();
        if let Err(e) = super::start::write_atomically(&self.path, &text) {
            self.lines = BROKEN;
            return Err(e);
        }
        self.lines = self.written.len();
        Ok(())
    }
}

fn line(key: &PeerKey, what: &str) -> String {
    format!("{} {what}\n", hex::encode(key.0))
}

/// A line: the key, and the reason of its ban or `None` for its end.
fn parse(line: &str) -> Result<(PeerKey, Option<Rejection>), &'static str> {
    let (key, what) = line
        .trim()
        .split_once(' ')
        .ok_or("expected a peer key and a reason")?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(key, &mut bytes).map_err(|_| "not 64 hex digits")?;
    let what = what.trim();
    if what == ENDED {
        return Ok((PeerKey(bytes), None));
    }
    let reason = Rejection::from_name(what).ok_or("unknown reason")?;
    Ok((PeerKey(bytes), Some(reason)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> PeerKey {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        PeerKey(k)
    }

    fn bans(range: std::ops::Range<u32>) -> Vec<(PeerKey, Rejection)> {
        range.map(|i| (key(i), Rejection::Equivocation)).collect()
    }

    #[test]
    fn the_record_round_trips_and_names_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bans");
        let (mut f, read) = BansFile::open(&p).unwrap();
        assert!(read.is_empty());
        let kept = vec![
            (PeerKey([1; 32]), Rejection::Equivocation),
            (PeerKey([2; 32]), Rejection::Outlier),
        ];
        f.record(&kept).unwrap();
        assert_eq!(BansFile::open(&p).unwrap().1, kept);
        f.record(&kept[1..]).unwrap();
        assert_eq!(BansFile::open(&p).unwrap().1, kept[1..]);
        std::fs::write(&p, format!("{} no_such_reason\n", hex::encode([3u8; 32]))).unwrap();
        let e = BansFile::open(&p).unwrap_err().to_string();
        assert!(
            e.contains("bans") && e.contains("line 1") && e.contains("unknown reason"),
            "{e}"
        );
    }

    /// A ban costs one line appended to the record, not a rewrite of the bans before it: a
    /// thousand bans one at a time write about a thousand lines, where rewriting the record each
    /// time wrote half a million. The record stays within twice its bans plus the slack.
    #[test]
    fn a_ban_appends_a_line_and_the_record_stays_within_twice_its_bans() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bans");
        let (mut f, _) = BansFile::open(&p).unwrap();
        f.record(&bans(0..1)).unwrap();
        let inode = std::fs::metadata(&p).unwrap().ino();
        let line = std::fs::metadata(&p).unwrap().len();
        for n in 2..=1000 {
            f.record(&bans(0..n)).unwrap();
            let meta = std::fs::metadata(&p).unwrap();
            assert_eq!(meta.ino(), inode, "ban {n} rewrote the record");
            assert_eq!(meta.len(), u64::from(n) * line, "ban {n}");
        }
        // Bans end and others come, as in a full table: rewritten now and then, never longer
        // than twice the bans plus the slack, and always reading back as the bans in force.
        let (mut rewrites, mut last) = (0, inode);
        for n in 0..1000 {
            let kept = bans(n + 1..n + 1001);
            f.record(&kept).unwrap();
            let meta = std::fs::metadata(&p).unwrap();
            if meta.ino() != last {
                rewrites += 1;
                last = meta.ino();
            }
            assert!(meta.len() <= (2 * 1000 + SLACK as u64) * line, "{n}");
            if n % 97 == 0 {
                assert_eq!(BansFile::open(&p).unwrap().1, kept, "{n}");
            }
        }
        assert!(rewrites > 0 && rewrites < 1000, "{rewrites}");
    }

    /// A write that failed (here: the record's path is a directory for a while) loses nothing:
    /// the next one writes the record whole, the bans of the failed one with it.
    #[test]
    fn after_a_failed_write_the_next_writes_every_ban() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bans");
        let (mut f, _) = BansFile::open(&p).unwrap();
        f.record(&bans(0..2)).unwrap();
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        let e = f.record(&bans(0..3)).unwrap_err().to_string();
        assert!(e.contains("bans"), "{e}");
        std::fs::remove_dir(&p).unwrap();
        f.record(&bans(0..3)).unwrap();
        assert_eq!(BansFile::open(&p).unwrap().1, bans(0..3));
        // A failed append, then fewer bans than before it: the record holds those.
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        assert!(f.record(&bans(0..4)).is_err());
        std::fs::remove_dir(&p).unwrap();
        f.record(&bans(1..3)).unwrap();
        assert_eq!(BansFile::open(&p).unwrap().1, bans(1..3));
        // A failed rewrite (its temporary file cannot be made), then the same bans asked for
        // again: they are written.
        let (mut f, _) = BansFile::open(&p).unwrap();
        f.record(&bans(0..100)).unwrap();
        let tmp = p.with_extension("tmp");
        std::fs::create_dir(&tmp).unwrap();
        assert!(
            f.record(&[]).is_err(),
            "100 ended bans: past the slack, a rewrite"
        );
        assert_eq!(BansFile::open(&p).unwrap().1, bans(0..100), "as it was");
        std::fs::remove_dir(&tmp).unwrap();
        f.record(&[]).unwrap();
        assert!(BansFile::open(&p).unwrap().1.is_empty());
    }

    /// A crash cut the last line short: that ban is lost, the others are read, and the record
    /// is rewritten before the next line is appended (or it would join the cut one).
    #[test]
    fn a_last_line_cut_short_is_left_out_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bans");
        let (mut f, _) = BansFile::open(&p).unwrap();
        f.record(&bans(0..3)).unwrap();
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str(&line(&key(7), "equivocation")[..20]);
        std::fs::write(&p, &text).unwrap();
        let (mut f, read) = BansFile::open(&p).unwrap();
        assert_eq!(read, bans(0..3));
        assert!(std::fs::read_to_string(&p).unwrap().ends_with('\n'));
        f.record(&bans(0..4)).unwrap();
        assert_eq!(BansFile::open(&p).unwrap().1, bans(0..4));
        // A cut line in the middle is no crash's doing: refused.
        std::fs::write(
            &p,
            format!("{}\n{}", &text[..30], line(&key(1), "equivocation")),
        )
        .unwrap();
        let e = BansFile::open(&p).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}
