//! Where a bench run puts its files: a fresh directory per run under
//! `$TMPDIR/chronicle-bench/`, a parent marked "top of a directory hierarchy"
//! (`FS_TOPDIR_FL`, `chattr +T`).
//!
//! Why: on ext4 without a journal (this project's bench machines), the inode allocator
//! skips every inode freed in the last minute or more, and it must read each one's
//! deletion time to know. New files go in their directory's block group, and without the
//! flag a run's directory lands in the same group as the previous run's, so a run that
//! follows another scanned past the thousands of files the last one removed: the small-file
//! ingestion limit measured anywhere from 1,255 to 3,838 uploads/s in back-to-back runs,
//! and ~13 % of the CPU of the upload phase went to that scan. Under a `TOPDIR` parent
//! the allocator spreads each new directory over the groups, so a run starts in a group
//! without that history (the same limit: 4,380-4,809 uploads/s). Where the flag is not
//! supported (another filesystem, no permission) it is simply not set.

use std::path::PathBuf;

pub(super) async fn fresh() -> std::io::Result<PathBuf> {
    let root = std::env::temp_dir().join("chronicle-bench");
    tokio::fs::create_dir_all(&root).await?;
    let marked = root.clone();
    tokio::task::spawn_blocking(move || mark_top_dir(&marked))
        .await
        .map_err(std::io::Error::other)?;
    let dir = root.join(uuid::Uuid::now_v7().simple().to_string());
    tokio::fs::create_dir(&dir).await?;
    Ok(dir)
}

fn mark_top_dir(dir: &std::path::Path) {
    use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
    let Ok(file) = std::fs::File::open(dir) else {
        return;
    };
    if let Ok(flags) = ioctl_getflags(&file)
        && !flags.contains(IFlags::TOPDIR)
    {
        let _ = ioctl_setflags(&file, flags | IFlags::TOPDIR);
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn each_run_gets_its_own_empty_directory() {
        let (a, b) = (super::fresh().await.unwrap(), super::fresh().await.unwrap());
        assert_ne!(a, b);
        assert_eq!(a.parent(), b.parent());
        for dir in [&a, &b] {
            assert!(std::fs::read_dir(dir).unwrap().next().is_none());
            std::fs::remove_dir(dir).unwrap();
        }
    }
}
