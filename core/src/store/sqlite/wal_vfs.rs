//! A VFS over SQLite's default one that writes each commit's WAL frames with one system call.
//!
//! SQLite appends a frame to the WAL as two writes, its 24-byte header and then its page: a
//! commit of 5 pages is 10 `pwrite`s, and one of a 1 MiB payload is 512. On the machines this
//! is developed on, each costs several microseconds of kernel time, which made the writes most
//! of a small commit's cost (the runtime thread's profile of a round trip: 17 % in `unixWrite`
//! under `walFrames`) and most of a big one's.
//!
//! This VFS hands every call to the default VFS (`unix`) except writes to a WAL file: a write
//! that continues the one before it is gathered in memory, and the gathered bytes go out as one
//! write of up to 64 KiB (through the default VFS, which loops over short writes)
//!
//! - right after the page of a **commit frame** (a frame header whose "database size after
//!   commit" field is not zero), inside that `xWrite` call, so a failure fails the commit as it
//!   would have without this layer; the WAL index, which tells readers (other connections, the
//!   checkpoint thread) the commit exists, is written only after `sqlite3WalFrames` returns;
//! - when 1 MiB is gathered (a big transaction writes in steps, not all at once);
//! - before any other call on the file (read, sync, truncate, size, locks, file controls,
//!   close), so nothing else ever sees the file without the bytes written before.
//!
//! Nothing is written that SQLite would not have written, in the same order; only the number of
//! system calls changes. The main database file and the journals are passed through untouched.

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The VFS's registered name (`Connection::open_with_flags_and_vfs`).
pub(super) const NAME: &str = "queuexec-wal";
const NAME_C: &CStr = c"queuexec-wal";

/// Gathered bytes beyond this are written out at once.
const FLUSH_BYTES: usize = 1 << 20;
/// The most one write to the default VFS carries.
const WRITE_BYTES: usize = 64 * 1024;
/// SQLite's WAL frame header (`WAL_FRAME_HDRSIZE`).
const FRAME_HEADER: usize = 24;

/// Registers the VFS (once per process); false if SQLite has no default VFS to wrap or refused
/// the registration (then the store opens on the default VFS).
pub(super) fn register() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find initialises SQLite if needed and returns a pointer to a VFS
        // that lives as long as the process (the default VFS is never unregistered here).
        let real = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
        if real.is_null() {
            return false;
        }
        // SAFETY: `real` is a valid VFS (above); it is copied, not changed.
        let mut vfs = unsafe { *real };
        let Ok(real_size) = usize::try_from(vfs.szOsFile) else {
            return false;
        };
        let Ok(size) = c_int::try_from(real_offset() + real_size) else {
            return false;
        };
        vfs.szOsFile = size;
        vfs.pNext = std::ptr::null_mut();
        vfs.zName = NAME_C.as_ptr();
        // Only opening is ours (it opens the real file through `REAL`); every other VFS
        // method is the real one's, given this copy, whose other fields are the real VFS's.
        vfs.xOpen = Some(open);
        REAL.get_or_init(|| RealVfs(real));
        let vfs = Box::leak(Box::new(vfs));
        // SAFETY: `vfs` is a valid, leaked (never freed) VFS with a static name.
        unsafe { ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK }
    })
}

/// The default VFS this one wraps.
struct RealVfs(*mut ffi::sqlite3_vfs);
// SAFETY: a VFS is process-wide and thread-safe by SQLite's contract.
unsafe impl Send for RealVfs {}
// SAFETY: as above.
unsafe impl Sync for RealVfs {}
static REAL: OnceLock<RealVfs> = OnceLock::new();

/// An open file: SQLite's header (our methods), what is gathered for a WAL, and the real
/// VFS's file right after it (at [`real_offset`]).
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    wal: bool,
    /// The next write is the page of a commit frame.
    commit_page_next: bool,
    /// The file offset of `gathered[0]`.
    offset: i64,
    gathered: Vec<u8>,
}

/// Where the real file starts in the memory SQLite gives [`open`].
const fn real_offset() -> usize {
    let size = std::mem::size_of::<File>();
    size.div_ceil(16) * 16
}

/// The real VFS's file inside ours.
///
/// # Safety
/// `file` points to a [`File`] SQLite allocated with our `szOsFile`.
unsafe fn real(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: the allocation is `real_offset() + real size` bytes (see `register`).
    unsafe { file.cast::<u8>().add(real_offset()).cast() }
}

/// The real file's methods.
///
/// # Safety
/// `file` is an open [`File`].
unsafe fn methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: an open real file has its methods set, and they live as long as the VFS.
    unsafe { &*(*real(file)).pMethods }
}

/// Writes out what is gathered.
///
/// # Safety
/// `file` is an open [`File`].
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the contract, `file` is ours and open.
    let me = unsafe { &mut *file.cast::<File>() };
    if me.gathered.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Some(write) = (unsafe { methods(file) }).xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let mut rc = ffi::SQLITE_OK;
    let mut offset = me.offset;
    // The default VFS writes at most 128 KiB per call (`seekAndWrite` masks the count with
    // 0x1ffff): larger runs go out in steps.
    for chunk in me.gathered.chunks(WRITE_BYTES) {
        #[cfg(test)]
        tests::WAL_WRITES.with(|n| n.set(n.get() + 1));
        // SAFETY: the real file is open; `chunk` is valid for its length (≤ WRITE_BYTES).
        rc = unsafe {
            write(
                real(file),
                chunk.as_ptr().cast(),
                chunk.len() as c_int,
                offset,
            )
        };
        if rc != ffi::SQLITE_OK {
            break;
        }
        offset += chunk.len() as i64;
    }
    // Written or not, these bytes are SQLite's to write again: it treats a failed write as a
    // failed transaction and starts over from its own state. (`commit_page_next` stays: a
    // commit frame's header that filled the buffer still has its page to come.)
    me.gathered.clear();
    rc
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(real_vfs) = REAL.get() else {
        return ffi::SQLITE_ERROR;
    };
    // SAFETY: SQLite gives `szOsFile` bytes at `file`; ours go first, initialised here.
    unsafe {
        file.cast::<File>().write(File {
            base: ffi::sqlite3_file {
                pMethods: std::ptr::null(),
            },
            wal: flags & ffi::SQLITE_OPEN_WAL != 0,
            commit_page_next: false,
            offset: 0,
            gathered: Vec::new(),
        });
    }
    // SAFETY: the real VFS opens its file in the rest of the allocation.
    let rc = unsafe {
        let real_file = real(file);
        (*real_file).pMethods = std::ptr::null();
        match (*real_vfs.0).xOpen {
            Some(real_open) => real_open(real_vfs.0, name, real_file, flags, out_flags),
            None => ffi::SQLITE_ERROR,
        }
    };
    // SAFETY: as above.
    unsafe {
        if (*real(file)).pMethods.is_null() {
            // Not opened: SQLite calls no method of ours (pMethods stays null), so nothing
            // else frees what `File` holds (an empty Vec: nothing).
            std::ptr::drop_in_place(file.cast::<File>());
            return if rc == ffi::SQLITE_OK {
                ffi::SQLITE_ERROR
            } else {
                rc
            };
        }
        (*file).pMethods = &METHODS;
    }
    rc
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes an open file once.
    unsafe {
        let flushed = flush(file);
        let closed = match methods(file).xClose {
            Some(close) => close(real(file)),
            None => ffi::SQLITE_OK,
        };
        std::ptr::drop_in_place(file.cast::<File>());
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite calls this on an open file of ours, with `amount` readable bytes.
    unsafe {
        let me = &mut *file.cast::<File>();
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        if !me.wal {
            return match methods(file).xWrite {
                Some(write) => write(real(file), data, amount, offset),
                None => ffi::SQLITE_IOERR_WRITE,
            };
        }
        let end = me.offset + me.gathered.len() as i64;
        if !me.gathered.is_empty() && offset != end {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        // Borrowed again: `flush` took the file through its own reference.
        let me = &mut *file.cast::<File>();
        if me.gathered.is_empty() {
            me.offset = offset;
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
        me.gathered.extend_from_slice(bytes);
        let commit_page = me.commit_page_next && len != FRAME_HEADER;
        // A frame header: bytes 4..8 are the database size after a commit, zero otherwise.
        me.commit_page_next = len == FRAME_HEADER && bytes[4..8] != [0, 0, 0, 0];
        if commit_page || me.gathered.len() >= FLUSH_BYTES {
            return flush(file);
        }
        ffi::SQLITE_OK
    }
}

/// Declares a method that writes out what is gathered, then calls the real file's (or gives
/// `$missing` when the real file has no such method).
macro_rules! flushing {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*), $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: SQLite calls this on an open file of ours.
            unsafe {
                let rc = flush(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                match methods(file).$field {
                    Some(f) => f(real(file) $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

const MISSING: c_int = ffi::SQLITE_MISUSE;
flushing!(read, xRead, (data: *mut c_void, amount: c_int, offset: i64), MISSING);
flushing!(truncate, xTruncate, (size: i64), MISSING);
flushing!(sync, xSync, (flags: c_int), MISSING);
flushing!(file_size, xFileSize, (size: *mut i64), MISSING);
flushing!(lock, xLock, (level: c_int), MISSING);
flushing!(unlock, xUnlock, (level: c_int), MISSING);
flushing!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int), MISSING);
flushing!(shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int), MISSING);
flushing!(file_control, xFileControl, (op: c_int, arg: *mut c_void), ffi::SQLITE_NOTFOUND);
// Memory-mapped reads see the file, so what is gathered goes out first.
flushing!(fetch, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void), {
    *out = std::ptr::null_mut();
    ffi::SQLITE_OK
});

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this on an open file of ours.
    unsafe { methods(file).xSectorSize.map_or(4096, |f| f(real(file))) }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this on an open file of ours.
    unsafe {
        methods(file)
            .xDeviceCharacteristics
            .map_or(0, |f| f(real(file)))
    }
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: SQLite calls this on an open file of ours.
    unsafe {
        match methods(file).xShmMap {
            Some(f) => f(real(file), region, size, extend, out),
            None => ffi::SQLITE_IOERR_SHMMAP,
        }
    }
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: SQLite calls this on an open file of ours. SQLite publishes a commit to other
    // connections (the WAL index header) between barriers, after the commit frame's `xWrite`,
    // which wrote everything gathered: nothing is left here to write.
    unsafe {
        debug_assert!(
            (*file.cast::<File>()).gathered.is_empty(),
            "a commit is published with WAL frames still gathered"
        );
        if let Some(f) = methods(file).xShmBarrier {
            f(real(file));
        }
    }
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: SQLite calls this on an open file of ours.
    unsafe {
        match methods(file).xShmUnmap {
            Some(f) => f(real(file), delete),
            None => ffi::SQLITE_OK,
        }
    }
}

unsafe extern "C" fn unfetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    page: *mut c_void,
) -> c_int {
    // SAFETY: SQLite calls this on an open file of ours.
    unsafe {
        match methods(file).xUnfetch {
            Some(f) => f(real(file), offset, page),
            None => ffi::SQLITE_OK,
        }
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use rusqlite::{Connection, OpenFlags, params};

    thread_local! {
        /// Writes this thread made to WAL files through the real VFS.
        pub(super) static WAL_WRITES: Cell<u64> = const { Cell::new(0) };
    }

    fn writes() -> u64 {
        WAL_WRITES.with(Cell::get)
    }

    fn writer(path: &std::path::Path) -> Connection {
        assert!(super::register(), "the VFS registers");
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), super::NAME)
            .expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("WAL");
        conn.pragma_update(None, "synchronous", "NORMAL")
            .expect("synchronous");
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no checkpoints");
        conn.execute_batch(
            "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);
             CREATE INDEX t_v ON t (length(v));",
        )
        .expect("schema");
        conn
    }

    fn blob(k: i64, len: usize) -> Vec<u8> {
        (0..len).map(|i| ((i as i64 * 7 + k) % 251) as u8).collect()
    }

    /// A commit of a few pages reaches the WAL in one write, and a connection on SQLite's
    /// default VFS (as another process would be) reads it at once, before the writer closes.
    #[test]
    fn a_small_commit_is_one_write_and_visible_to_another_connection_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("small.db");
        let conn = writer(&path);
        let other = Connection::open(&path).expect("open on the default VFS");
        for k in 0..50_i64 {
            let before = writes();
            conn.execute(
                "INSERT INTO t (k, v) VALUES (?1, ?2)",
                params![k, blob(k, 300)],
            )
            .expect("insert");
            assert_eq!(writes() - before, 1, "commit {k}: its frames in one write");
            let seen: i64 = other
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .expect("count");
            assert_eq!(seen, k + 1, "the other connection sees commit {k}");
        }
    }

    /// A transaction of megabytes goes out in steps of at most 64 KiB (the default VFS refuses
    /// more than 128 KiB in one call), byte-exact for a reader on the default VFS, and again
    /// after the writer closed (its close checkpoints the WAL into the database file).
    #[test]
    fn a_big_commit_goes_out_in_steps_and_reads_back_byte_exact() {
        const LEN: usize = 3 * 1024 * 1024 + 17;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.db");
        let conn = writer(&path);
        let before = writes();
        conn.execute_batch("BEGIN").expect("begin");
        for k in 0..3_i64 {
            conn.execute(
                "INSERT INTO t (k, v) VALUES (?1, ?2)",
                params![k, blob(k, LEN)],
            )
            .expect("insert");
        }
        conn.execute_batch("COMMIT").expect("commit");
        let made = writes() - before;
        // About 9 MiB of frames: at least one write per 64 KiB, and far fewer than SQLite's
        // two per page (about 4,600).
        assert!(
            (144..=400).contains(&made),
            "{made} writes for 9 MiB of frames"
        );
        let all_there = |conn: &Connection, when: &str| {
            for k in 0..3_i64 {
                let v: Vec<u8> = conn
                    .query_row("SELECT v FROM t WHERE k = ?1", [k], |r| r.get(0))
                    .expect("read");
                assert!(v == blob(k, LEN), "payload {k} byte-exact {when}");
            }
        };
        let other = Connection::open(&path).expect("open on the default VFS");
        all_there(&other, "to a reader on the default VFS");
        drop(other);
        drop(conn);
        all_there(&Connection::open(&path).expect("reopen"), "after the close");
    }

    /// A transaction rolled back after megabytes of frames were gathered and written leaves
    /// nothing behind, and the next commit on the same connection lands whole.
    #[test]
    fn a_rolled_back_transaction_leaves_nothing_and_the_next_commit_lands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rollback.db");
        let conn = writer(&path);
        // A small page cache makes SQLite spill the big insert's pages to the WAL before the
        // commit.
        conn.pragma_update(None, "cache_size", 16)
            .expect("cache_size");
        conn.execute("INSERT INTO t (k, v) VALUES (1, x'01')", [])
            .expect("first");
        conn.execute_batch("BEGIN").expect("begin");
        conn.execute(
            "INSERT INTO t (k, v) VALUES (?1, ?2)",
            params![2, blob(2, 2 << 20)],
        )
        .expect("big insert");
        assert!(
            conn.execute("INSERT INTO t (k, v) VALUES (1, x'02')", [])
                .is_err(),
            "a duplicate key fails"
        );
        conn.execute_batch("ROLLBACK").expect("rollback");
        conn.execute("INSERT INTO t (k, v) VALUES (3, x'03')", [])
            .expect("third");
        let other = Connection::open(&path).expect("open on the default VFS");
        let keys: Vec<i64> = other
            .prepare("SELECT k FROM t ORDER BY k")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("keys");
        assert_eq!(keys, vec![1, 3]);
    }
}
