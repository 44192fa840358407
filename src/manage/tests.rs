//! Unit tests of the operator actions on a store.

use super::*;
use crate::config::Config;
use crate::spool::Spool;
use crate::store::{Source, Store};
use std::sync::Arc;

fn local() -> (tempfile::TempDir, Local) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let local = Local::new(
        Arc::new(Config::default()),
        store,
        QueueAccess::Offline(spool),
    );
    (dir, local)
}

#[test]
fn alias_validation_is_anchored() {
    assert_eq!(parse_alias("Hello.World").unwrap(), "hello.world");
    assert_eq!(parse_alias("*").unwrap(), "*");
    for bad in [
        "", ".a", "a.", "a..b", "a@b", "a b", "a%b", "x\n", " x", "ä",
    ] {
        assert!(parse_alias(bad).is_err(), "{bad:?} must be refused");
    }
    assert!(parse_domain("Example.COM").is_ok());
    assert!(parse_domain("[1.2.3.4]").is_err());
}

#[tokio::test]
async fn alias_lifecycle_and_errors() {
    let (_d, a) = local();
    assert!(matches!(a.aliases("x.test"), Err(ManageError::NotFound(_))));
    a.add_domain("x.test").await.unwrap();
    assert!(matches!(
        a.add_domain("X.test").await,
        Err(ManageError::Conflict { .. })
    ));
    let v = a
        .put_alias("x.test", "Hi", "u@dest.test, v@dest.test", false)
        .await
        .unwrap();
    assert_eq!(v.forward, "u@dest.test,v@dest.test");
    assert!(matches!(
        a.put_alias("x.test", "hi", "w@dest.test", false).await,
        Err(ManageError::Conflict { .. })
    ));
    assert!(matches!(
        a.put_alias("x.test", "nobody", "w@dest.test", true).await,
        Err(ManageError::NotFound(_))
    ));
    let err = a
        .put_alias("x.test", "loop", "me@x.test", false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("loop"), "{err}");
    let err = a
        .put_alias("x.test", "bad", "not-an-address", false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("forward"), "{err}");
    let too_many = (0..11)
        .map(|i| format!("u{i}@d.test"))
        .collect::<Vec<_>>()
        .join(",");
    assert!(
        a.put_alias("x.test", "many", &too_many, false)
            .await
            .is_err()
    );
    assert_eq!(a.domain("x.test").unwrap().aliases_total, 1);
    a.remove_alias("x.test", "hi").await.unwrap();
    assert!(matches!(
        a.remove_alias("x.test", "hi").await,
        Err(ManageError::NotFound(_))
    ));
}

#[tokio::test]
async fn import_is_all_or_nothing() {
    let (_d, a) = local();
    let err = a
        .import_aliases("a@one.test\tu@dest.test\nbroken line-without-at\n")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    assert!(a.domains().unwrap().is_empty());
    let n = a
        .import_aliases("# comment\n1fwd@alias1.country\td1.u1@dest.test\n2fwd@alias1.country\td1.u2@dest.test\n").await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(a.aliases("alias1.country").unwrap().len(), 2);
}

#[tokio::test]
async fn names_under_a_chain_governed_tld_cannot_be_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
    // A static domain from before the TLD was governed.
    store.domain_add("old.country", Source::Static).unwrap();
    store
        .alias_put(
            "old.country",
            "a",
            vec!["u@dest.test".into()],
            Source::Static,
        )
        .unwrap();
    let mut config = Config::default();
    config.chain.enabled = true;
    config.chain.registries = vec![crate::config::RegistryConfig {
        tld: "country".into(),
        eas: format!("0x{}", "11".repeat(20)),
        dc: String::new(),
        eas_events: true,
        log_addresses: Vec::new(),
    }];
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let a = Local::new(Arc::new(config), store, QueueAccess::Offline(spool));
    let refused = |r: Result<_, ManageError>| match r {
        Err(ManageError::Conflict { field, message }) => {
            assert_eq!(field, "domain");
            assert!(message.contains("/activate"), "{message}");
        }
        Err(e) => panic!("expected 409, got {e}"),
        Ok(_) => panic!("expected 409, got success"),
    };
    for name in ["unclaimed.country", "A.B.Country", "country", "x.country."] {
        refused(a.add_domain(name).await.map(|_| ()));
    }
    refused(
        a.put_alias("old.country", "b", "u@dest.test", false)
            .await
            .map(|_| ()),
    );
    refused(
        a.update_alias("old.country", "a", Some("v@dest.test"), None)
            .await
            .map(|_| ()),
    );
    let item = BulkItem {
        alias: "c".into(),
        forward: "u@dest.test".into(),
    };
    refused(
        a.bulk_aliases("unclaimed.country", &[item], BulkBehavior::Add)
            .await
            .map(|_| ()),
    );
    refused(
        a.import_aliases("x@unclaimed.country\tu@dest.test\n")
            .await
            .map(|_| ()),
    );
    // Names that only look alike are the operator's.
    a.add_domain("country.example").await.unwrap();
    a.add_domain("xcountry").await.unwrap();
    // What is left from before is reported, and can be removed.
    assert_eq!(a.static_under_chain().unwrap(), vec!["old.country"]);
    assert_eq!(
        a.remove_alias("old.country", "a").await.unwrap(),
        Removed::Deleted
    );
    a.remove_domain("old.country").await.unwrap();
    assert!(a.static_under_chain().unwrap().is_empty());
}

#[tokio::test]
async fn import_refuses_a_forward_to_a_domain_it_adds() {
    let (_d, a) = local();
    let err = a
        .import_aliases("a@one.test\tb@two.test\nb@two.test\tu@dest.test\n")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("forwarding loop"), "{err}");
    assert!(a.domains().unwrap().is_empty(), "nothing imported");
}
