//! Tests of the SRS codec: both directions, hashes, time stamps, secrets.

use super::*;
use crate::config::Config;

const T: u64 = 1_577_836_860;
const DAYS21: Duration = Duration::from_secs(21 * DAY_SECS);

fn srs() -> Srs {
    Srs::new("example.com", vec![b"tops3cr3t".to_vec()], 4, DAYS21)
}

#[test]
fn design_vectors() {
    let s = srs();
    assert_eq!(
        s.forward_at("test@otherdomain.com", T),
        "SRS0=vmyz=2W=otherdomain.com=test@example.com"
    );
    assert_eq!(
        s.forward_at("SRS0=opaque+string@otherdomain.com", T),
        "SRS1=chaI=otherdomain.com==opaque+string@example.com"
    );
    assert_eq!(
        s.reverse_at("SRS0=vmyz=2W=otherdomain.com=test@example.com", T)
            .unwrap(),
        "test@otherdomain.com"
    );
    assert_eq!(
        s.reverse_at("SRS1=chaI=otherdomain.com==opaque+string@example.com", T)
            .unwrap(),
        "SRS0=opaque+string@otherdomain.com"
    );
    assert_eq!(s.domain(), "example.com");
}

#[test]
fn timestamps() {
    // Day 18262 = 854 mod 1024 = 26 * 32 + 22.
    assert_eq!(&timestamp(T), b"2W");
    assert_eq!(parse_timestamp("2W"), Some(854));
    assert_eq!(parse_timestamp("2w"), Some(854));
    assert_eq!(&timestamp(0), b"AA");
    assert_eq!(&timestamp(1023 * DAY_SECS), b"77");
    assert_eq!(&timestamp(1024 * DAY_SECS), b"AA");
    assert_eq!(parse_timestamp("A"), None);
    assert_eq!(parse_timestamp("AAA"), None);
    assert_eq!(parse_timestamp("A1"), None);
    assert_eq!(parse_timestamp("Aé"), None);
}

#[test]
fn round_trips() {
    let s = srs();
    for sender in [
        "test@otherdomain.com",
        "first.last+tag@Sub.Example.ORG",
        "Mixed.Case@MiXeD.example",
        "a=b==c=@x.org",
        "=leading@x.org",
        "\"quoted@local\"@x.org",
        "user@xn--bcher-kva.example",
        "ünïcödé@bücher.example",
        "srs@x.org",
        "SRS2=not=srs@x.org",
        "SRS1=broken@x.org",
    ] {
        let srs_address = s.forward_at(sender, T);
        assert!(Srs::is_srs_address(&srs_address), "{srs_address}");
        assert!(srs_address.ends_with("@example.com"));
        assert_eq!(
            s.reverse_at(&srs_address, T + 3 * DAY_SECS).unwrap(),
            sender,
            "{srs_address}"
        );
    }
}

#[test]
fn srs1_chains() {
    let s = srs();
    // An SRS0 address of another forwarder, any tag separator and case.
    for (sender, first) in [
        (
            "SRS0=HHHH=TT=orig.org=user@fwd1.net",
            "SRS0=HHHH=TT=orig.org=user@fwd1.net",
        ),
        (
            "srs0-HHHH=TT=orig.org=user@fwd1.net",
            "SRS0-HHHH=TT=orig.org=user@fwd1.net",
        ),
        (
            "SRS0+HHHH=TT=orig.org=user@FWD1.net",
            "SRS0+HHHH=TT=orig.org=user@FWD1.net",
        ),
    ] {
        let once = s.forward_at(sender, T);
        assert!(once.starts_with("SRS1="), "{once}");
        assert_eq!(s.reverse_at(&once, T).unwrap(), first);
    }
    // An SRS1 address of a second forwarder: re-signed, still pointing
    // at the first forwarder.
    let once = s.forward_at("SRS1=xxxx=fwd1.net==HHHH=TT=orig.org=user@fwd2.net", T);
    let (_, tail) = once.split_at(9);
    assert_eq!(tail, "=fwd1.net==HHHH=TT=orig.org=user@example.com");
    assert_eq!(
        s.reverse_at(&once, T).unwrap(),
        "SRS0=HHHH=TT=orig.org=user@fwd1.net"
    );
    // SRS1 addresses carry no timestamp: they do not expire.
    assert!(s.reverse_at(&once, T + 500 * DAY_SECS).is_ok());
}

#[test]
fn not_rewritten() {
    let s = srs();
    for sender in [
        "",
        "user",
        "@x.org",
        "user@",
        "user@example.com",
        "u@EXAMPLE.Com",
        "u@a=b",
    ] {
        assert_eq!(s.forward_at(sender, T), sender);
    }
}

#[test]
fn reverse_ignores_case() {
    let s = srs();
    let a = "SRS0=vmyz=2W=otherdomain.com=test@example.com";
    assert_eq!(
        s.reverse_at(&a.to_ascii_uppercase(), T).unwrap(),
        "TEST@OTHERDOMAIN.COM"
    );
    assert_eq!(
        s.reverse_at(&a.to_ascii_lowercase(), T).unwrap(),
        "test@otherdomain.com"
    );
    assert_eq!(
        s.reverse_at("SRS0=vmyz=2W=otherdomain.com=test@Elsewhere.NET", T)
            .unwrap(),
        "test@otherdomain.com"
    );
    let a = "srs1=CHAi=OtherDomain.com==opaque+string@example.com";
    assert_eq!(
        s.reverse_at(a, T).unwrap(),
        "SRS0=opaque+string@OtherDomain.com"
    );
    // Other tag separators, as postsrsd -a mints them.
    assert_eq!(
        s.reverse_at("SRS0-vmyz=2W=otherdomain.com=test@example.com", T)
            .unwrap(),
        "test@otherdomain.com"
    );
}

#[test]
fn reverse_accepts_url_safe_alphabet() {
    let s = srs();
    let mut seen = (false, false);
    for i in 0..2000 {
        let a = s.forward_at(&format!("user{i}@other.org"), T);
        let hash = &a[5..9];
        if !hash.contains(['+', '/']) {
            continue;
        }
        seen.0 |= hash.contains('+');
        seen.1 |= hash.contains('/');
        let safe = a.replacen(hash, &hash.replace('+', "-").replace('/', "_"), 1);
        assert_eq!(
            s.reverse_at(&safe, T).unwrap(),
            format!("user{i}@other.org")
        );
        assert_eq!(s.reverse_at(&a, T).unwrap(), format!("user{i}@other.org"));
        if seen == (true, true) {
            return;
        }
    }
    panic!("no hash with + and / in 2000 addresses");
}

#[test]
fn rotation() {
    let old = Srs::new("example.com", vec![b"old-secret".to_vec()], 4, DAYS21);
    let rotated = Srs::new(
        "example.com",
        vec![b"new-secret".to_vec(), b"old-secret".to_vec()],
        4,
        DAYS21,
    );
    let fresh = Srs::new("example.com", vec![b"new-secret".to_vec()], 4, DAYS21);
    for sender in ["a@b.org", "SRS0=x=y=z@w.org"] {
        let by_old = old.forward_at(sender, T);
        let by_rotated = rotated.forward_at(sender, T);
        assert_eq!(by_rotated, fresh.forward_at(sender, T), "the first signs");
        assert_eq!(
            rotated.reverse_at(&by_old, T).unwrap(),
            old.reverse_at(&by_old, T).unwrap()
        );
        assert_eq!(
            rotated.reverse_at(&by_rotated, T).unwrap(),
            fresh.reverse_at(&by_rotated, T).unwrap()
        );
        assert!(matches!(
            fresh.reverse_at(&by_old, T),
            Err(SrsError::BadHash)
        ));
        assert!(matches!(
            old.reverse_at(&by_rotated, T),
            Err(SrsError::BadHash)
        ));
    }
}

#[test]
fn expiry_boundary() {
    let s = srs();
    let minted_day = T / DAY_SECS;
    let a = s.forward_at("test@otherdomain.com", T);
    let day_start = minted_day * DAY_SECS;
    // Same day, then the last second of day D + 21: valid.
    assert!(s.reverse_at(&a, day_start).is_ok());
    assert!(s.reverse_at(&a, day_start + 22 * DAY_SECS - 1).is_ok());
    // First second of day D + 22: expired.
    assert!(matches!(
        s.reverse_at(&a, day_start + 22 * DAY_SECS),
        Err(SrsError::Expired)
    ));
    // The day before minting: "in the future", 1023 days old.
    assert!(matches!(
        s.reverse_at(&a, day_start - 1),
        Err(SrsError::Expired)
    ));
    // Timestamps wrap every 1024 days, as in libsrs2.
    assert!(s.reverse_at(&a, day_start + 1024 * DAY_SECS).is_ok());
    // Minted on day 1023, checked on day 1029 (timestamp 5).
    let late = s.forward_at("test@otherdomain.com", 1023 * DAY_SECS + 10);
    assert!(late.contains("=77="));
    assert!(s.reverse_at(&late, 1029 * DAY_SECS).is_ok());
    assert!(s.reverse_at(&late, (1023 + 21) * DAY_SECS).is_ok());
    assert!(matches!(
        s.reverse_at(&late, (1023 + 22) * DAY_SECS),
        Err(SrsError::Expired)
    ));
    // max_age is counted in whole days, rounded down.
    let short = Srs::new(
        "example.com",
        vec![b"tops3cr3t".to_vec()],
        4,
        Duration::from_secs(DAY_SECS + 3600),
    );
    assert!(short.reverse_at(&a, day_start + 2 * DAY_SECS - 1).is_ok());
    assert!(matches!(
        short.reverse_at(&a, day_start + 2 * DAY_SECS),
        Err(SrsError::Expired)
    ));
}

#[test]
fn bad_hashes() {
    let s = srs();
    let good = "SRS0=vmyz=2W=otherdomain.com=test@example.com";
    for bad in [
        "SRS0=vmyy=2W=otherdomain.com=test@example.com",
        "SRS0=vmy=2W=otherdomain.com=test@example.com",
        "SRS0=vmyzx=2W=otherdomain.com=test@example.com",
        "SRS0=vmyz=2X=otherdomain.com=test@example.com",
        "SRS0=vmyz=2W=otherdomain.org=test@example.com",
        "SRS0=vmyz=2W=otherdomain.com=tést@example.com",
        "SRS0=vmyz=2W=otherdomain.com=test2@example.com",
        "SRS1=chaJ=otherdomain.com==opaque+string@example.com",
        "SRS1=chaI=otherdomain.com=-opaque+string@example.com",
    ] {
        assert!(
            matches!(s.reverse_at(bad, T), Err(SrsError::BadHash)),
            "{bad}: {:?}",
            s.reverse_at(bad, T)
        );
    }
    let other = Srs::new("example.com", vec![b"another!".to_vec()], 4, DAYS21);
    assert!(matches!(other.reverse_at(good, T), Err(SrsError::BadHash)));
    // A bad hash on an expired address is reported as a bad hash.
    assert!(matches!(
        s.reverse_at(
            "SRS0=vmyy=2W=otherdomain.com=test@example.com",
            T + 100 * DAY_SECS
        ),
        Err(SrsError::BadHash)
    ));
}

#[test]
fn shorter_hashes_only_down_to_the_minimum() {
    let old = "SRS0=vmyz=2W=otherdomain.com=test@example.com";
    let s8 = Srs::new("example.com", vec![b"tops3cr3t".to_vec()], 8, DAYS21);
    assert!(matches!(s8.reverse_at(old, T), Err(SrsError::BadHash)));
    let lenient = s8.clone().with_min_hash_length(4);
    assert_eq!(lenient.reverse_at(old, T).unwrap(), "test@otherdomain.com");
    // Minting still uses 8 characters; 3 are never enough.
    assert_eq!(
        lenient.forward_at("test@otherdomain.com", T),
        "SRS0=vmyz7Bwa=2W=otherdomain.com=test@example.com"
    );
    let short = "SRS0=vmy=2W=otherdomain.com=test@example.com";
    assert!(matches!(
        lenient.reverse_at(short, T),
        Err(SrsError::BadHash)
    ));
}

#[test]
fn hash_lengths() {
    let long = Srs::new("example.com", vec![b"tops3cr3t".to_vec()], 8, DAYS21);
    let longest = Srs::new("example.com", vec![b"tops3cr3t".to_vec()], 28, DAYS21);
    let s = srs();
    let a8 = long.forward_at("test@otherdomain.com", T);
    let a28 = longest.forward_at("test@otherdomain.com", T);
    // HMAC base64 "vmyz7BwaV7BFsJiaZTJeJaQF2Ys=", padded with A.
    assert_eq!(a8, "SRS0=vmyz7Bwa=2W=otherdomain.com=test@example.com");
    assert_eq!(
        a28,
        "SRS0=vmyz7BwaV7BFsJiaZTJeJaQF2YsA=2W=otherdomain.com=test@example.com"
    );
    // Longer hashes verify when every character matches; shorter do not.
    assert!(s.reverse_at(&a8, T).is_ok());
    assert!(s.reverse_at(&a28, T).is_ok());
    assert!(long.reverse_at(&a28, T).is_ok());
    assert!(matches!(
        long.reverse_at("SRS0=vmyz=2W=otherdomain.com=test@example.com", T),
        Err(SrsError::BadHash)
    ));
    assert!(matches!(
        s.reverse_at("SRS0=vmyz7BwX=2W=otherdomain.com=test@example.com", T),
        Err(SrsError::BadHash)
    ));
    let too_long = a28.replacen("YsA=", "YsAA=", 1);
    assert!(matches!(s.reverse_at(&too_long, T), Err(SrsError::BadHash)));
}

#[test]
fn malformed_and_foreign() {
    let s = srs();
    for (address, expected) in [
        ("", "NotSrs"),
        ("@", "NotSrs"),
        ("user@example.com", "NotSrs"),
        ("SRS0@example.com", "NotSrs"),
        ("SRS2=a=b=c=d@example.com", "NotSrs"),
        ("SRS0x=a=b=c@example.com", "NotSrs"),
        ("SRSé=a@example.com", "NotSrs"),
        ("SRS0é=a@example.com", "NotSrs"),
        ("xSRS0=vmyz=2W=otherdomain.com=test@example.com", "NotSrs"),
        ("SRS0=@example.com", "Malformed"),
        ("SRS0=vmyz@example.com", "Malformed"),
        ("SRS0=vmyz=2W@example.com", "Malformed"),
        ("SRS0=vmyz=2W=otherdomain.com@example.com", "Malformed"),
        ("SRS0=vmyz=2W=otherdomain.com=@example.com", "Malformed"),
        ("SRS0=vmyz=2W==test@example.com", "Malformed"),
        ("SRS0==2W=otherdomain.com=test@example.com", "Malformed"),
        ("SRS0=vmyz=2=otherdomain.com=test@example.com", "Malformed"),
        (
            "SRS0=vmyz=2W1=otherdomain.com=test@example.com",
            "Malformed",
        ),
        ("SRS0=vmyz=2!=otherdomain.com=test@example.com", "Malformed"),
        ("SRS0=vmyz=2é=otherdomain.com=test@example.com", "Malformed"),
        ("SRS1=@example.com", "Malformed"),
        ("SRS1=chaI@example.com", "Malformed"),
        ("SRS1=chaI=otherdomain.com@example.com", "Malformed"),
        ("SRS1=chaI=otherdomain.com=@example.com", "Malformed"),
        ("SRS1=chaI==opaque@example.com", "Malformed"),
        ("SRS1==otherdomain.com==opaque@example.com", "Malformed"),
    ] {
        let got = s.reverse_at(address, T);
        assert_eq!(
            got.map_err(|e| format!("{e:?}")),
            Err(expected.to_string()),
            "{address}"
        );
    }
}

#[test]
fn srs_address_detection() {
    for yes in [
        "SRS0=a=b=c=d@x",
        "srs0=x@y",
        "Srs1-x@y",
        "SRS1+x@y",
        "SRS0=",
        "SRS0=a@b@c",
    ] {
        assert!(Srs::is_srs_address(yes), "{yes}");
    }
    for no in [
        "",
        "SRS0",
        "SRS2=x@y",
        "SRS0_x@y",
        "SRS0x@y",
        " SRS0=x@y",
        "user@SRS0=x",
        "é",
        "SRS0é",
    ] {
        assert!(!Srs::is_srs_address(no), "{no}");
    }
}

#[test]
fn generated_secret_is_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    let first = Srs::from_config(&config).unwrap();
    let path = generated_secret_path(&config);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.trim().len() >= 32, "{text}");
    let second = Srs::from_config(&config).unwrap();
    let a = first.forward_at("user@x.org", T);
    assert_eq!(second.forward_at("user@x.org", T), a);
    assert_eq!(second.reverse_at(&a, T).unwrap(), "user@x.org");
    assert_eq!(first.domain(), config.srs_domain());
    // Nothing but the secret is left in the directory.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("srs.secret")]);
}

#[test]
fn concurrent_first_use_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let outputs: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| Srs::from_config(&config).unwrap().forward_at("u@x.org", T)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(outputs.windows(2).all(|w| w[0] == w[1]), "{outputs:?}");
}

#[test]
fn configured_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets");
    crate::tls::write_private(
        &file,
        b"# rotated 2024\n\nfile-secret-1\r\n  # old\nfile-secret-2\n",
    )
    .unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.srs.domain = "srs.example.net".into();
    config.srs.hash_length = 6;
    config.srs.secrets_file = Some(file.clone());
    let s = Srs::from_config(&config).unwrap();
    let expect = |secrets: &[&str]| {
        Srs::new(
            "srs.example.net",
            secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
            6,
            DAYS21,
        )
    };
    assert_eq!(s.domain(), "srs.example.net");
    assert_eq!(
        s.forward_at("u@x.org", T),
        expect(&["file-secret-1"]).forward_at("u@x.org", T)
    );
    let old = expect(&["file-secret-2"]).forward_at("u@x.org", T);
    assert_eq!(s.reverse_at(&old, T).unwrap(), "u@x.org");
    // Config secrets come first, then the file's.
    config.srs.secrets = vec!["config-secret".into()];
    let s = Srs::from_config(&config).unwrap();
    assert_eq!(
        s.forward_at("u@x.org", T),
        expect(&["config-secret"]).forward_at("u@x.org", T)
    );
    assert_eq!(s.reverse_at(&old, T).unwrap(), "u@x.org");
    assert!(!generated_secret_path(&config).exists());
    // A file without secrets, or none at all, is an error.
    std::fs::remove_file(&file).unwrap();
    crate::tls::write_private(&file, b"# nothing\n\n").unwrap();
    assert!(matches!(
        Srs::from_config(&config),
        Err(SrsError::Secrets(_))
    ));
    config.srs.secrets_file = Some(dir.path().join("missing"));
    assert!(matches!(
        Srs::from_config(&config),
        Err(SrsError::Secrets(_))
    ));
}

fn sender_strategy() -> impl proptest::strategy::Strategy<Value = (String, String)> {
    use proptest::prelude::*;
    (
        prop_oneof![
            "[A-Za-z0-9._+=-]{1,24}",
            "[sS][rR][sS][01][=+-][A-Za-z0-9._+=-]{0,24}",
            "\\PC{1,12}",
        ],
        "[A-Za-z0-9-]{1,12}(\\.[A-Za-z]{2,6}){1,2}",
    )
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    #[test]
    fn reverse_never_panics(
        address in proptest::prop_oneof![
            "\\PC*",
            ".*",
            "[sS][rR][sS][01][=+-][A-Za-z0-9=+/_@.é-]{0,40}",
        ],
        t in proptest::prelude::any::<u64>(),
    ) {
        let s = srs();
        let _ = s.reverse_at(&address, t);
        let _ = Srs::is_srs_address(&address);
        let forwarded = s.forward_at(&address, t);
        if forwarded != address {
            proptest::prop_assert!(s.reverse_at(&forwarded, t).is_ok(), "{}", forwarded);
        }
    }

    #[test]
    fn forward_then_reverse_is_identity(
        (local, domain) in sender_strategy(),
        t in 0u64..(1u64 << 40),
        age in 0u64..(22 * DAY_SECS),
        hash_length in 4usize..=28,
    ) {
        let s = Srs::new("relay.example", vec![b"prop-secret".to_vec(), b"older".to_vec()], hash_length, DAYS21);
        let sender = format!("{local}@{domain}");
        let forwarded = s.forward_at(&sender, t);
        proptest::prop_assert!(Srs::is_srs_address(&forwarded));
        proptest::prop_assert!(forwarded.ends_with("@relay.example"));
        let checked_at = (t / DAY_SECS) * DAY_SECS + age;
        let back = s.reverse_at(&forwarded, checked_at).unwrap();
        let expected = match srs_tag(&local) {
            // SRS1 restores the SRS0 address, with libsrs2's tag case.
            Some(Tag::Srs0) => format!("SRS0{}@{domain}", &local[4..]),
            Some(Tag::Srs1) if forwarded.starts_with("SRS1") => {
                let inner = &local[5..];
                let (_, rest) = inner.split_once('=').unwrap();
                let (host, opaque) = rest.split_once('=').unwrap();
                format!("SRS0{opaque}@{host}")
            }
            _ => sender.clone(),
        };
        proptest::prop_assert_eq!(back, expected);
    }
}
