//! Synthetic datasets on a real file system: the mixed tree `mover demo` moves, pseudo-random files, and a
//! byte-for-byte comparison of two trees (names, kinds, bytes, permission bits, mtimes). Used by the demo and
//! by the end-to-end tests; the contents come from the simulator's seeded generator, so a seed gives the
//! same bytes everywhere.

use super::rng::splitmix;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Writes a mixed tree of about `total` bytes: one large file, many small ones of odd sizes, empty files and
/// directories, nested, with varied modes. Contents are pseudo-random (incompressible).
pub fn generate_dataset(root: &Path, total: u64) -> std::io::Result<()> {
    fs::create_dir_all(root.join("raw/run1"))?;
    fs::create_dir_all(root.join("empty-dir"))?;
    fs::create_dir_all(root.join("meta"))?;
    let large = total * 3 / 4;
    write_random(&root.join("raw/run1/big.bin"), large, 1)?;
    let small_count = 200u64;
    let mut left = total - large;
    for i in 0..small_count {
        let size = if i + 1 == small_count { left } else { (left / (small_count - i)).saturating_mul(i % 3 + 1) / 2 };
        let size = size.min(left);
        left -= size;
        let dir = if i % 2 == 0 { "raw" } else { "meta" };
        write_random(&root.join(format!("{dir}/part-{i:04}.dat")), size, 100 + i)?;
    }
    write_random(&root.join("meta/empty.txt"), 0, 0)?;
    write_random(&root.join("raw/run1/empty"), 0, 0)?;
    fs::set_permissions(root.join("meta/empty.txt"), fs::Permissions::from_mode(0o640))?;
    fs::set_permissions(root.join("meta"), fs::Permissions::from_mode(0o750))?;
    Ok(())
}

/// Writes `size` pseudo-random (incompressible) bytes from `seed` to `path`.
pub fn write_random(path: &Path, size: u64, seed: u64) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    let mut counter = seed << 40;
    while written < size {
        for chunk in buf.chunks_exact_mut(8) {
            counter += 1;
            chunk.copy_from_slice(&splitmix(counter).to_le_bytes());
        }
        let n = (size - written).min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        written += n as u64;
    }
    f.flush()
}

/// Checks that `b` holds exactly the tree `a` holds: same names, kinds, bytes, permission bits and
/// modification times of files.
pub fn compare_trees(a: &Path, b: &Path) -> Result<(), String> {
    let ma = fs::symlink_metadata(a).map_err(|e| format!("{}: {e}", a.display()))?;
    let mb = fs::symlink_metadata(b).map_err(|e| format!("{} missing at the destination: {e}", b.display()))?;
    if ma.file_type() != mb.file_type() {
        return Err(format!("{} and {} differ in kind", a.display(), b.display()));
    }
    if ma.mode() & 0o777 != mb.mode() & 0o777 {
        return Err(format!("{}: mode {:o} became {:o}", b.display(), ma.mode() & 0o777, mb.mode() & 0o777));
    }
    if ma.is_dir() {
        let names = |p: &Path| -> Result<Vec<_>, String> {
            let mut v: Vec<_> = fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            v.sort();
            Ok(v)
        };
        let (na, nb) = (names(a)?, names(b)?);
        if na != nb {
            return Err(format!("{} has entries {na:?} but the copy has {nb:?}", a.display()));
        }
        for n in na {
            compare_trees(&a.join(&n), &b.join(&n))?;
        }
        return Ok(());
    }
    if (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
        return Err(format!("{}: modification time not kept", b.display()));
    }
    if ma.len() != mb.len() || !same_bytes(a, b).map_err(|e| e.to_string())? {
        return Err(format!("{} differs from {}", b.display(), a.display()));
    }
    Ok(())
}

fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(fb.read(&mut bb[..1])? == 0);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}
