//! Interoperability of the relay's SRS (src/rewrite/srs.rs) with the real
//! postsrsd (1.10, libsrs2): both mint the same addresses from the same
//! secret, and each reverses what the other mints, SRS0 and SRS1, across
//! hash lengths, secret rotation, case changes and the expiry boundary.
//!
//! postsrsd runs as a child in the foreground (no `-D`) on 127.0.0.1 with
//! free ports for its forward and reverse tcp_table maps. No `-u` and no
//! `-c`: postsrsd 1.10 only switches user or chroots when asked to, so it
//! runs as whoever runs the tests, root in a container or not, with nothing
//! to set up. `-t` bounds the life of its per-connection children; the
//! child is killed (and reaped, bounded) on drop. Without
//! /usr/sbin/postsrsd the tests say so and return: scripts/test installs it.

use eas_relay::rewrite::srs::{Srs, SrsError};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const POSTSRSD: &str = "/usr/sbin/postsrsd";
const DOMAIN: &str = "example.com";
const SECRET: &str = "interop-s3cret-2024";
const OLD_SECRET: &str = "tops3cr3t";
const DAY: u64 = 86_400;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Sender shapes: plus tags, dots, mixed case, `=` in the local part, bytes
/// tcp_table must %-encode, non-ASCII.
const SENDERS: &[&str] = &[
    "test@otherdomain.com",
    "first.last+tag@Sub.Example.ORG",
    "Mixed.Case@MiXeD.example",
    "a=b==c@x.org",
    "=leading=equals@x.org",
    "user+tag=x@example.net",
    "o'brien_x-y@x.co.uk",
    "has space@x.org",
    "100%sure@x.org",
    "ünïcödé@bücher.example",
    "ÜPPER.Case@Bücher.Example",
    "srs@x.org",
    "SRS2=not=srs@x.org",
];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn installed() -> bool {
    if Path::new(POSTSRSD).exists() {
        return true;
    }
    eprintln!("postsrsd not installed; run scripts/test");
    false
}

/// Postfix tcp_table(5) encoding: whitespace, `%` and non-printable bytes
/// as `%XX`.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b <= b' ' || b >= 0x7f || b == b'%' {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("postsrsd answered non-UTF-8")
}

/// One tcp_table connection.
struct Table {
    reader: BufReader<TcpStream>,
}

impl Table {
    fn connect(port: u16) -> std::io::Result<Table> {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Table {
            reader: BufReader::new(stream),
        })
    }

    /// `get KEY`: Ok(result) for 200, Err(message) for 500.
    fn get(&mut self, key: &str) -> Result<String, String> {
        let stream = self.reader.get_mut();
        stream
            .write_all(format!("get {}\n", encode(key)).as_bytes())
            .expect("write to postsrsd");
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("read from postsrsd");
        let line = line.trim_end_matches(['\r', '\n']);
        match line.split_once(' ') {
            Some(("200", value)) => Ok(decode(value)),
            Some(("500", message)) => Err(decode(message)),
            _ => panic!("unexpected tcp_table answer to `get {key}`: {line:?}"),
        }
    }
}

/// A running postsrsd and a connection to each of its maps.
struct Postsrsd {
    child: Child,
    forward: Table,
    reverse: Table,
    _dir: tempfile::TempDir,
}

impl Postsrsd {
    /// postsrsd for DOMAIN with `secrets` (the first signs) and `extra`
    /// arguments; None when it is not installed.
    fn start(secrets: &[&str], extra: &[&str]) -> Option<Postsrsd> {
        if !installed() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("postsrsd.secret");
        std::fs::write(&secret_file, secrets.join("\n") + "\n").unwrap();
        let mut last_log = String::new();
        // Ports are free when picked, but another process may take one
        // before postsrsd binds it: retry with new ones.
        for _ in 0..5 {
            let (forward_port, reverse_port) = free_ports();
            let log = dir.path().join("postsrsd.log");
            let log_file = std::fs::File::create(&log).unwrap();
            let child = Command::new(POSTSRSD)
                .arg(format!("-s{}", secret_file.display()))
                .arg(format!("-d{DOMAIN}"))
                .arg("-l127.0.0.1")
                .arg(format!("-f{forward_port}"))
                .arg(format!("-r{reverse_port}"))
                .arg("-t10")
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .spawn()
                .expect("spawn postsrsd");
            let mut running = Running(Some(child));
            match wait_ready(running.child(), forward_port, reverse_port) {
                Ok((forward, reverse)) => {
                    return Some(Postsrsd {
                        child: running.0.take().unwrap(),
                        forward,
                        reverse,
                        _dir: dir,
                    });
                }
                Err(why) => {
                    drop(running);
                    last_log = format!("{why}; output: {}", read_log(&log));
                }
            }
        }
        panic!("postsrsd did not start: {last_log}");
    }
}

impl Drop for Postsrsd {
    fn drop(&mut self) {
        // Closing the connections ends postsrsd's per-connection children
        // (-t10 bounds them anyway); then the listener goes.
        for table in [&self.forward, &self.reverse] {
            let _ = table.reader.get_ref().shutdown(std::net::Shutdown::Both);
        }
        stop(&mut self.child);
    }
}

/// A child being started, killed if startup fails or panics.
struct Running(Option<Child>);

impl Running {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            stop(child);
        }
    }
}

/// Kills `child` and reaps it, waiting at most five seconds.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    eprintln!("postsrsd (pid {}) did not exit after SIGKILL", child.id());
}

fn read_log(path: &PathBuf) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    text
}

/// Two distinct free TCP ports on 127.0.0.1.
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// Connects to both maps once postsrsd listens, within ten seconds.
fn wait_ready(child: &mut Child, forward: u16, reverse: u16) -> Result<(Table, Table), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("postsrsd exited: {status}"));
        }
        if let (Ok(f), Ok(r)) = (Table::connect(forward), Table::connect(reverse)) {
            return Ok((f, r));
        }
        if Instant::now() > deadline {
            return Err("postsrsd did not listen within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ours(secrets: &[&str], hash_length: usize) -> Srs {
    Srs::new(
        DOMAIN,
        secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
        hash_length,
        Duration::from_secs(21 * DAY),
    )
}

/// What postsrsd mints for `sender`, checked equal to what `srs` mints now
/// (either side of the request, in case the day changes meanwhile).
fn forward_both(postsrsd: &mut Postsrsd, srs: &Srs, sender: &str) -> String {
    let before = srs.forward(sender);
    let theirs = postsrsd
        .forward
        .get(sender)
        .unwrap_or_else(|e| panic!("postsrsd cannot forward {sender}: {e}"));
    let after = srs.forward(sender);
    assert!(
        theirs == before || theirs == after,
        "forward {sender}: postsrsd {theirs}, ours {after}"
    );
    theirs
}

/// The address the SRS1 form of `sender` reverses to.
fn first_hop(sender: &str) -> String {
    format!("SRS0{}", &sender[4..])
}

#[test]
fn srs0_both_directions() {
    let Some(mut postsrsd) = Postsrsd::start(&[SECRET], &[]) else {
        return;
    };
    let srs = ours(&[SECRET], 4);
    for sender in SENDERS {
        // postsrsd mints, we reverse.
        let theirs = forward_both(&mut postsrsd, &srs, sender);
        assert!(theirs.starts_with("SRS0="), "{theirs}");
        assert_eq!(srs.reverse(&theirs).unwrap(), *sender, "{theirs}");
        assert_eq!(
            srs.reverse(&theirs.to_ascii_uppercase()).unwrap(),
            sender.to_ascii_uppercase()
        );
        // We mint, postsrsd reverses, in any case.
        let mine = srs.forward(sender);
        for variant in [
            mine.clone(),
            mine.to_ascii_lowercase(),
            mine.to_ascii_uppercase(),
        ] {
            let back = postsrsd.reverse.get(&variant);
            let expected = if variant == mine {
                sender.to_string()
            } else if variant == mine.to_ascii_lowercase() {
                sender.to_ascii_lowercase()
            } else {
                sender.to_ascii_uppercase()
            };
            assert_eq!(back, Ok(expected), "postsrsd reversing {variant}");
        }
    }
    // Neither rewrites a sender of the SRS domain itself.
    for sender in ["user@example.com", "SRS0=x=y=z=w@Example.COM"] {
        assert_eq!(postsrsd.forward.get(sender).as_deref(), Ok(sender));
        assert_eq!(srs.forward(sender), sender);
    }
}

#[test]
fn srs1_both_directions() {
    let Some(mut postsrsd) = Postsrsd::start(&[SECRET], &[]) else {
        return;
    };
    let srs = ours(&[SECRET], 4);
    for sender in [
        "SRS0=opaque+string@otherdomain.com",
        "SRS0=HHHH=TT=orig.org=user+tag@fwd1.net",
        "srs0=hhhh=tt=Orig.Org=Mixed.Case@FWD1.net",
        "SRS0-HHHH=TT=orig.org=a=b@fwd1.net",
        "SRS0+HHHH=TT=orig.org=user@fwd1.net",
    ] {
        let theirs = forward_both(&mut postsrsd, &srs, sender);
        assert!(theirs.starts_with("SRS1="), "{theirs}");
        assert_eq!(srs.reverse(&theirs).unwrap(), first_hop(sender));
        let mine = srs.forward(sender);
        assert_eq!(postsrsd.reverse.get(&mine), Ok(first_hop(sender)));
        assert_eq!(
            postsrsd.reverse.get(&mine.to_ascii_lowercase()),
            Ok(first_hop(&sender.to_ascii_lowercase()))
        );
    }
    // An SRS1 sender: re-signed, still pointing at the first forwarder.
    let sender = "SRS1=xxxx=fwd1.net==HHHH=TT=orig.org=user@fwd2.net";
    let theirs = forward_both(&mut postsrsd, &srs, sender);
    assert!(theirs.ends_with("=fwd1.net==HHHH=TT=orig.org=user@example.com"));
    assert_eq!(
        srs.reverse(&theirs).unwrap(),
        "SRS0=HHHH=TT=orig.org=user@fwd1.net"
    );
    assert_eq!(
        postsrsd.reverse.get(&srs.forward(sender)).as_deref(),
        Ok("SRS0=HHHH=TT=orig.org=user@fwd1.net")
    );
}

#[test]
fn hash_alphabet_and_bad_hashes() {
    let Some(mut postsrsd) = Postsrsd::start(&[SECRET], &[]) else {
        return;
    };
    let srs = ours(&[SECRET], 4);
    // postsrsd's hashes use the standard base64 alphabet: find both + and /.
    let (mut plus, mut slash) = (false, false);
    for i in 0..3000 {
        let sender = format!("user{i}@other.org");
        let theirs = forward_both(&mut postsrsd, &srs, &sender);
        let hash = &theirs[5..9];
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'),
            "{theirs}"
        );
        if hash.contains(['+', '/']) {
            plus |= hash.contains('+');
            slash |= hash.contains('/');
            assert_eq!(srs.reverse(&theirs).unwrap(), sender);
            // We also take the URL-safe spelling.
            let safe = format!(
                "SRS0={}{}",
                hash.replace('+', "-").replace('/', "_"),
                &theirs[9..]
            );
            assert_eq!(srs.reverse(&safe).unwrap(), sender);
        }
        if plus && slash {
            break;
        }
    }
    assert!(plus && slash, "no + and / seen in postsrsd's hashes");

    // A changed hash character is refused by both.
    let sender = "test@otherdomain.com";
    let theirs = postsrsd.forward.get(sender).unwrap();
    let mine = srs.forward(sender);
    for address in [theirs, mine] {
        let mut bytes = address.into_bytes();
        // Hashes compare without regard to case (local parts may be case-folded
        // on the way back), so the change must be another letter, not `q`→`Q`.
        bytes[5] = if bytes[5].eq_ignore_ascii_case(&b'Q') {
            b'R'
        } else {
            b'Q'
        };
        let bad = String::from_utf8(bytes).unwrap();
        assert!(matches!(srs.reverse(&bad), Err(SrsError::BadHash)), "{bad}");
        let refused = postsrsd.reverse.get(&bad).unwrap_err();
        assert!(refused.contains("Hash invalid"), "{refused}");
    }
    // Another secret: refused by both.
    let stranger = ours(&["not-the-secret"], 4).forward(sender);
    assert!(matches!(srs.reverse(&stranger), Err(SrsError::BadHash)));
    assert!(postsrsd.reverse.get(&stranger).is_err());
    // Not SRS at all.
    assert!(matches!(srs.reverse(sender), Err(SrsError::NotSrs)));
    assert!(postsrsd.reverse.get(sender).is_err());
}

#[test]
fn expiry_agrees() {
    let Some(mut postsrsd) = Postsrsd::start(&[SECRET], &[]) else {
        return;
    };
    let srs = ours(&[SECRET], 4);
    let sender = "old.mail@otherdomain.com";
    // Retry if the day changes while checking.
    for _ in 0..3 {
        let today = now() / DAY;
        let mut results = Vec::new();
        for age in [0, 1, 20, 21, 22, 30, 1000, 1023, 1024] {
            let minted = srs.forward_at(sender, (today - age) * DAY + 1);
            let theirs = postsrsd.reverse.get(&minted);
            let mine = srs.reverse(&minted);
            results.push((age, minted, theirs, mine));
        }
        if now() / DAY != today {
            continue;
        }
        for (age, minted, theirs, mine) in results {
            // libsrs2's rule: valid while (today - stamp) mod 1024 <= 21.
            let valid = age % 1024 <= 21;
            if valid {
                assert_eq!(theirs.as_deref(), Ok(sender), "age {age}: {minted}");
                assert_eq!(mine.unwrap(), sender, "age {age}: {minted}");
            } else {
                let refused = theirs.unwrap_err();
                assert!(refused.contains("out of date"), "age {age}: {refused}");
                assert!(matches!(mine, Err(SrsError::Expired)), "age {age}");
            }
        }
        // And postsrsd's fresh address, as we see it 21 and 22 days on.
        let theirs = postsrsd.forward.get(sender).unwrap();
        let minted_day = now() / DAY;
        assert_eq!(
            srs.reverse_at(&theirs, (minted_day + 21) * DAY + DAY - 1)
                .unwrap(),
            sender
        );
        assert!(matches!(
            srs.reverse_at(&theirs, (minted_day + 22) * DAY),
            Err(SrsError::Expired)
        ));
        return;
    }
    panic!("the day kept changing");
}

#[test]
fn rotation_agrees() {
    // postsrsd signs with its first secret and accepts all.
    let Some(mut postsrsd) = Postsrsd::start(&[SECRET, OLD_SECRET], &[]) else {
        return;
    };
    let rotated = ours(&[SECRET, OLD_SECRET], 4);
    let old = ours(&[OLD_SECRET], 4);
    let new = ours(&[SECRET], 4);
    for sender in ["test@otherdomain.com", "SRS0=opaque+string@otherdomain.com"] {
        let theirs = forward_both(&mut postsrsd, &rotated, sender);
        assert_eq!(theirs, new.forward(sender));
        assert!(matches!(old.reverse(&theirs), Err(SrsError::BadHash)));
        let by_old = old.forward(sender);
        let expected = if Srs::is_srs_address(sender) {
            first_hop(sender)
        } else {
            sender.to_string()
        };
        assert_eq!(postsrsd.reverse.get(&by_old).as_ref(), Ok(&expected));
        assert_eq!(rotated.reverse(&by_old).unwrap(), expected);
    }
}

#[test]
fn hash_lengths_agree() {
    for length in [6usize, 8, 27, 28] {
        let n = format!("-n{length}");
        let Some(mut postsrsd) = Postsrsd::start(&[SECRET], &[&n]) else {
            return;
        };
        let srs = ours(&[SECRET], length);
        for sender in SENDERS.iter().take(5).chain(["SRS0=x@y.org"].iter()) {
            let theirs = forward_both(&mut postsrsd, &srs, sender);
            let expected = if Srs::is_srs_address(sender) {
                first_hop(sender)
            } else {
                sender.to_string()
            };
            assert_eq!(srs.reverse(&theirs).unwrap(), expected, "{theirs}");
            // A 4-character relay accepts the longer hash too.
            assert_eq!(ours(&[SECRET], 4).reverse(&theirs).unwrap(), expected);
            assert_eq!(
                postsrsd.reverse.get(&srs.forward(sender)).as_ref(),
                Ok(&expected)
            );
        }
    }
}

#[test]
fn tcp_table_encoding() {
    assert_eq!(encode("a b%c@é"), "a%20b%25c@%C3%A9");
    assert_eq!(decode("a%20b%25c@%C3%A9"), "a b%c@é");
    assert_eq!(decode("100%"), "100%");
}
