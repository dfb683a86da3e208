//! The local store's directories: kept when emptied, except a collected blob's variants.

use super::*;

fn local() -> (std::path::PathBuf, Storage) {
    let dir = std::env::temp_dir().join(format!("storage-{}", Uuid::now_v7()));
    let storage = Storage::local(&dir).unwrap();
    (dir, storage)
}

#[tokio::test]
async fn a_drained_temp_directory_stays_for_the_next_upload() {
    let (root, storage) = local();
    let tenant = TenantId(Uuid::now_v7());
    let key = Storage::temp_key(tenant, Uuid::now_v7());
    storage.put(&key, b"bytes".to_vec()).await.unwrap();
    storage.delete(&key).await.unwrap();
    let dir = root.join(format!("tmp/{tenant}"));
    assert!(dir.is_dir(), "the tenant's temp directory is kept");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(root).unwrap();
}

#[tokio::test]
async fn forgetting_variants_removes_their_directory_only_once_empty() {
    let (root, storage) = local();
    let tenant = TenantId(Uuid::now_v7());
    let sha = "ab".repeat(32);
    let thumb = Storage::variant_key(tenant, &sha, "thumbnail");
    let stripped = Storage::variant_key(tenant, &sha, "stripped");
    storage.put(&thumb, b"t".to_vec()).await.unwrap();
    storage.put(&stripped, b"s".to_vec()).await.unwrap();
    let dir = root.join(format!("variants/{tenant}/{sha}"));

    storage.delete(&thumb).await.unwrap();
    storage.forget_variants(tenant, &sha).await;
    assert!(dir.is_dir(), "a variant is left: the directory stays");
    assert_eq!(storage.read_all(&stripped).await.unwrap().as_ref(), b"s");

    storage.delete(&stripped).await.unwrap();
    storage.forget_variants(tenant, &sha).await;
    assert!(!dir.exists(), "the emptied directory is gone");
    // Again, when it is already gone: nothing to do, no error.
    storage.forget_variants(tenant, &sha).await;
    std::fs::remove_dir_all(root).unwrap();
}
