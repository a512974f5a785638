//! `DbBuilder`: each setting reaches the storage it opens, journal settings are refused
//! where no journal file is opened, and `Debug` shows what a `Db` is.

mod common;

use common::on_all_runtimes;
use durus::storage::MemoryStorage;
use durus::{Counter, Db, DbBuilder, DbOptions, Durability, Error};

/// Adds `n` to the root counter in a transaction of its own.
async fn add(db: &Db<Counter>, n: i64) {
    db.transact(|tx| {
        Box::pin(async move {
            tx.root_mut().await?.add(n);
            Ok(())
        })
    })
    .await
    .unwrap();
}

#[test]
fn journal_settings_are_refused_where_no_journal_is_opened() {
    on_all_runtimes(|_| async {
        let memory = DbBuilder::<Counter>::memory().durability(Durability::Eventual);
        match memory.open().await {
            Err(Error::Invalid(why)) => assert!(why.contains("durability"), "{why}"),
            other => panic!("{other:?}"),
        }
        let custom = DbBuilder::<Counter>::storage(MemoryStorage::new())
            .cache_size(10)
            .shared(true)
            .read_only(true);
        match custom.open().await {
            // The first journal setting made is the one named.
            Err(Error::Invalid(why)) => assert!(why.contains("shared"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Db settings, and DbOptions with its default journal part, apply anywhere.
        let db: Db<Counter> = DbBuilder::memory()
            .options(DbOptions::default())
            .cache_size(10)
            .open()
            .await
            .unwrap();
        assert_eq!(db.begin().await.unwrap().root().await.unwrap().get(), 0);
    });
}

#[test]
fn a_read_only_database_reads_beside_the_writer_and_refuses_writes() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro.durus");
        let writer: Db<Counter> = Db::builder(&path).open().await.unwrap();
        add(&writer, 7).await;

        let view: Db<Counter> = Db::builder(&path).read_only(true).open().await.unwrap();
        assert_eq!(view.begin().await.unwrap().root().await.unwrap().get(), 7);
        let mut tx = view.begin().await.unwrap();
        tx.root_mut().await.unwrap().increment();
        assert!(matches!(tx.commit().await, Err(Error::ReadOnly)));
        writer.close().await.unwrap();
    });
}

#[test]
fn a_shared_builder_opens_one_file_from_several_handles() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.durus");
        let builder = Db::<Counter>::builder(&path).shared(true);
        let a = builder.clone().open().await.unwrap();
        let b = builder.open().await.unwrap();
        // Exclusive mode is refused while shared writers have the file open.
        assert!(matches!(
            Db::<Counter>::open(&path).await,
            Err(Error::Locked { .. })
        ));
        add(&a, 1).await;
        add(&b, 1).await;
        assert_eq!(a.begin().await.unwrap().root().await.unwrap().get(), 2);
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

#[test]
fn debug_shows_the_snapshot_and_the_cache() {
    on_all_runtimes(|_| async {
        let db: Db<Counter> = DbBuilder::memory().cache_size(1234).open().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        tx.root_mut().await.unwrap().increment();
        let shown = format!("{tx:?}");
        assert!(
            shown.contains("snapshot: Tid(1)") && shown.contains("writes: 1"),
            "{shown}"
        );
        tx.commit().await.unwrap();
        let shown = format!("{db:?}");
        assert!(
            shown.contains("snapshot: Tid(2)") && shown.contains("cache_size: 1234"),
            "{shown}"
        );
        let shown = format!("{:?}", DbBuilder::<Counter>::file("x.durus").cache_size(5));
        assert!(
            shown.contains("\"x.durus\"") && shown.contains("cache_size: 5"),
            "{shown}"
        );
    });
}
