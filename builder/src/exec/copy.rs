//! COPY and ADD: files from the build context (or another stage, or an image) into the mounted
//! overlay of the stage being built.
//!
//! Owns the Dockerfile's copy rules: wildcards in sources, a directory source copies its
//! contents, a destination ending in `/` (or several sources) is a directory, owners of context
//! files become 0:0 and owners of files from another stage or image are kept (docker since
//! moby#38599, BuildKit, buildah), unless `--chown`, which also owns the parent directories
//! the copy creates (BuildKit's fsutil#49, buildah), while a destination directory that
//! exists keeps its owner and mode; `--chmod` sets the mode, `.dockerignore`
//! hides context files, ADD extracts local tar archives (plain, gzip, bzip2, xz or zstd). Both
//! sides are resolved inside their roots with [`Root`]: a source symlink cannot reach outside
//! the context, a destination symlink planted by an earlier step cannot make a copy write
//! outside the image.

use super::apply::clean_abs;
use super::{contexts, overlay, remote, Builder, Result as BuildResult, State};
use crate::dockerfile::ignore::{excluded_path as excluded, pruned_path, Ignore};
use crate::dockerfile::CopyArgs;
use crate::fsroot::{open_dir_at, remove_at, Root};
use crate::image::unpack;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Timespec, Timestamps};
use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One COPY or ADD with expanded arguments.
pub struct CopyOp<'a> {
    pub src: &'a Root,
    /// Applies to context sources only.
    pub ignore: Option<&'a Ignore>,
    /// Source paths relative to `src` (may contain wildcards).
    pub sources: Vec<String>,
    /// Inline files (heredocs): (name, content).
    pub inline: Vec<(String, String)>,
    /// Absolute destination inside the image.
    pub dest: String,
    pub owner: Option<(u32, u32)>,
    /// Keep the sources' owners when there is no `--chown` (`--from` a stage or image).
    pub keep_owners: bool,
    pub chmod: Option<u32>,
    pub add: bool,
    /// `--exclude` patterns (`.dockerignore` syntax), matched against paths relative to the
    /// source directory and, for files, against their context path and name.
    pub exclude: Option<Ignore>,
    /// `--parents`: a source `a/b/f` lands at `DEST/a/b/f`.
    pub parents: bool,
    /// ADD `--checksum=sha256:HEX`: every file source must have this digest.
    pub checksum: Option<String>,
}

impl CopyOp<'_> {
    /// The owner of a copied entry whose source has metadata `md`.
    fn owner_of(&self, md: &fs::Metadata) -> (u32, u32) {
        match (self.owner, self.keep_owners) {
            (Some(o), _) => o,
            (None, true) => (md.uid(), md.gid()),
            (None, false) => (0, 0),
        }
    }
}

/// Creates `dir` and its missing parents (0755 or `--chmod`'s mode); with `--chown`, the ones
/// created get its owner.
fn mkdirs(op: &CopyOp<'_>, dst: &Root, dir: &Path) -> Result<OwnedFd, String> {
    // Directories a copy creates take --chmod's mode when it is given, else 0755 (BuildKit's
    // fsutil since 2025, checked by its testCopyChmod; dockerd 20.10's BuildKit made 0755).
    let mode = op.chmod.unwrap_or(0o755);
    let (fd, created) = dst.mkdir_all(dir, mode).map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = op.owner {
        for d in created {
            let f = dst.dir(&d).map_err(|e| e.to_string())?;
            rfs::fchown(
                &f,
                Some(rfs::Uid::from_raw(uid)),
                Some(rfs::Gid::from_raw(gid)),
            )
            .map_err(|e| format!("chown {}: {e}", d.display()))?;
        }
    }
    Ok(fd)
}

/// Where a single file `name` lands: `dest/name` if `dest` is a directory, else `dest`; its
/// parent directory (created as [`mkdirs`] does) and file name.
fn target_of(
    op: &CopyOp<'_>,
    dst: &Root,
    dest: &Path,
    dest_is_dir: bool,
    name: &Path,
) -> Result<(OwnedFd, std::ffi::OsString), String> {
    let target = if dest_is_dir {
        dest.join(name)
    } else {
        dest.to_path_buf()
    };
    let parent = target.parent().unwrap_or(Path::new("/"));
    let pfd = mkdirs(op, dst, parent)?;
    let fname = target.file_name().ok_or("destination is the root")?;
    Ok((pfd, fname.to_os_string()))
}

/// Performs the copy into `dst` (the mounted overlay).
pub fn copy(op: &CopyOp<'_>, dst: &Root) -> Result<(), String> {
    let mut srcs: Vec<PathBuf> = Vec::new();
    // A wildcard matching nothing is no error while another source matches (BuildKit's
    // AllowEmptyWildcard); the first one is named when nothing matched at all.
    let mut empty_glob = None;
    for s in &op.sources {
        let rel = s.trim_start_matches('/');
        if rel.contains(['*', '?', '[']) {
            let found = op.src.glob(rel).map_err(|e| e.to_string())?;
            let found: Vec<PathBuf> = found
                .into_iter()
                .filter(|p| !pruned_path(op.ignore, p, op.src.is_dir(p)) && !op.excluded_file(p))
                .collect();
            if found.is_empty() {
                empty_glob.get_or_insert(s);
            }
            srcs.extend(found);
        } else {
            let p = crate::fsroot::inner(Path::new(rel));
            if pruned_path(op.ignore, &p, op.src.is_dir(&p)) {
                return Err(format!("{s}: excluded by .dockerignore"));
            }
            if !op.excluded_file(&p) {
                srcs.push(p);
            }
        }
    }
    if let (Some(s), true) = (empty_glob, srcs.is_empty() && op.inline.is_empty()) {
        return Err(format!("no source files were specified by {s:?}"));
    }
    let count = srcs.len() + op.inline.len();
    // Symlinks on the way, the last one included, are followed inside the image (BuildKit's
    // RootPath): a dangling link as destination makes its target.
    let dest = dst
        .resolve(Path::new(&op.dest))
        .map_err(|e| format!("{}: {e}", op.dest))?;
    let dest_is_dir = op.parents
        || op.dest.ends_with('/')
        || count > 1
        || dst.open_at(&dest, OFlags::DIRECTORY | OFlags::PATH).is_ok();
    if count > 1 && !op.dest.ends_with('/') && !op.parents {
        return Err(format!(
            "when using COPY with more than one source file, the destination must be a directory and end with a / ({})",
            op.dest
        ));
    }
    for (name, content) in &op.inline {
        let (pfd, fname) = target_of(op, dst, &dest, dest_is_dir, Path::new(name))?;
        let f = create_file(&pfd, fname.as_ref()).map_err(|e| e.to_string())?;
        let mut f = fs::File::from(f);
        io::Write::write_all(&mut f, content.as_bytes()).map_err(|e| e.to_string())?;
        finish(
            &OwnedFd::from(f),
            op.owner.unwrap_or((0, 0)),
            op.chmod.unwrap_or(0o644),
            None,
        )
        .map_err(|e| e.to_string())?;
    }
    for rel in srcs {
        let real = op
            .src
            .real_path(&rel)
            .map_err(|e| format!("{}: {e}", rel.display()))?;
        let md = fs::metadata(&real).map_err(|e| format!("{}: {e}", rel.display()))?;
        if let Some(want) = &op.checksum {
            if md.is_dir() {
                return Err(format!("--checksum: {} is a directory", rel.display()));
            }
            let got = file_sha256(&real).map_err(|e| format!("{}: {e}", rel.display()))?;
            if &got != want {
                return Err(format!(
                    "--checksum: {} has digest {got}, expected {want}",
                    rel.display()
                ));
            }
        }
        let dest = match (op.parents, rel.parent()) {
            (true, Some(_)) if md.is_dir() => dest.join(&rel),
            (true, Some(p)) => dest.join(p),
            _ => dest.clone(),
        };
        if md.is_dir() {
            copy_tree(op, &real, &rel, &dest, dst)?;
        } else if op.add && is_archive(&real) {
            // Extracted with the destination as its root (BuildKit's chrooted untar): an
            // entry's `..` or absolute link stops at the destination.
            mkdirs(op, dst, &dest)?;
            let into = dst.sub(&dest).map_err(|e| e.to_string())?;
            let f = fs::File::open(&real).map_err(|e| e.to_string())?;
            let stream = decompressed(BufReader::new(f)).map_err(|e| e.to_string())?;
            unpack::unpack(
                &into,
                Path::new("/"),
                stream,
                &rel.display().to_string(),
                unpack::Options {
                    whiteouts: false,
                    owners: true,
                },
            )
            .map_err(|e| e.to_string())?;
        } else {
            let name = rel
                .file_name()
                .map(PathBuf::from)
                .ok_or("cannot copy the context root as a file")?;
            let (pfd, fname) = target_of(op, dst, &dest, dest_is_dir, &name)?;
            copy_entry(op, &real, &md, &pfd, fname.as_ref()).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

impl CopyOp<'_> {
    /// `--exclude` for a file or glob source named by its context path.
    fn excluded_file(&self, rel: &Path) -> bool {
        excluded(self.exclude.as_ref(), rel)
            || rel
                .file_name()
                .is_some_and(|n| excluded(self.exclude.as_ref(), Path::new(n)))
    }
}

/// `sha256:HEX` of a file's content.
fn file_sha256(p: &Path) -> io::Result<String> {
    let mut w = crate::image::HashWriter::new(io::sink());
    io::copy(&mut fs::File::open(p)?, &mut w)?;
    Ok(w.finish().1)
}

/// Copies the contents of the directory `real` (context path `rel`) into `dest`.
fn copy_tree(
    op: &CopyOp<'_>,
    real: &Path,
    rel: &Path,
    dest: &Path,
    dst: &Root,
) -> Result<(), String> {
    // A destination directory that exists keeps its owner and mode; one the copy creates is
    // made as its parents are (0755 or --chmod's mode, --chown's owner), not with the source
    // directory's mode: the contents are what is copied (BuildKit's fsutil prepareTargetDir).
    let existed = dst.dir(dest).is_ok();
    let dfd = mkdirs(op, dst, dest)?;
    if !existed {
        finish(
            &dfd,
            op.owner.unwrap_or((0, 0)),
            op.chmod.unwrap_or(0o755),
            None,
        )
        .map_err(|e| e.to_string())?;
    }
    let mut dirs: Vec<(PathBuf, i64)> = Vec::new();
    let mut pending: Vec<(usize, PathBuf)> = Vec::new();
    let mut linked: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut walk = walkdir::WalkDir::new(real)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(e) = walk.next() {
        let e = e.map_err(|e| e.to_string())?;
        let sub = e.path().strip_prefix(real).expect("below the walk root");
        let is_dir = e.file_type().is_dir();
        // Only the excluded directories above this entry stay pending.
        pending.retain(|(depth, _)| *depth < e.depth());
        if excluded(op.ignore, &rel.join(sub)) || excluded(op.exclude.as_ref(), sub) {
            if is_dir
                && !pruned_path(op.ignore, &rel.join(sub), true)
                && !excluded(op.exclude.as_ref(), sub)
            {
                // A `!` exception may re-include something below: walk in, and make the
                // directory only if something is (BuildKit sends an excluded parent lazily).
                pending.push((e.depth(), e.path().to_path_buf()));
            } else if is_dir {
                walk.skip_current_dir();
            }
            continue;
        }
        for (_, p) in pending.drain(..) {
            let psub = p.strip_prefix(real).expect("below the walk root");
            let target = dest.join(psub);
            let parent = target.parent().unwrap_or(Path::new("/"));
            let pfd = dst.dir(parent).map_err(|e| e.to_string())?;
            let md = p.symlink_metadata().map_err(|e| e.to_string())?;
            let name = target.file_name().expect("walk entries have names");
            copy_entry(op, &p, &md, &pfd, name.as_ref()).map_err(|e| e.to_string())?;
            dirs.push((target, md.mtime()));
        }
        let target = dest.join(sub);
        let parent = target.parent().unwrap_or(Path::new("/"));
        let pfd = dst.dir(parent).map_err(|e| e.to_string())?;
        let md = e.path().symlink_metadata().map_err(|e| e.to_string())?;
        let name = target.file_name().expect("walk entries have names");
        // Files linked to each other in the source stay linked in the copy (BuildKit's
        // fsutil copy); the first one copied is what the others link to.
        let inode = (md.is_file() && md.nlink() > 1).then(|| (md.dev(), md.ino()));
        if let Some(first) = inode.and_then(|i| linked.get(&i)) {
            let from = dst.dir(first.parent().unwrap_or(Path::new("/")));
            let from_name = first.file_name().expect("a copied file has a name");
            remove_at(&pfd, name).map_err(|e| e.to_string())?;
            rfs::linkat(
                from.map_err(|e| e.to_string())?,
                from_name,
                &pfd,
                name,
                AtFlags::empty(),
            )
            .map_err(|e| format!("link {}: {e}", target.display()))?;
            continue;
        }
        copy_entry(op, e.path(), &md, &pfd, name.as_ref()).map_err(|e| e.to_string())?;
        if let Some(i) = inode {
            linked.insert(i, target.clone());
        }
        if md.is_dir() {
            dirs.push((target, md.mtime()));
        }
    }
    for (d, mtime) in dirs.iter().rev() {
        if let Ok(fd) = dst.dir(d) {
            let _ = rfs::futimens(&fd, &times(*mtime));
        }
    }
    Ok(())
}

/// Copies one file, directory (itself only) or symlink to `name` in `pfd`.
fn copy_entry(
    op: &CopyOp<'_>,
    src: &Path,
    md: &fs::Metadata,
    pfd: &OwnedFd,
    name: &Path,
) -> io::Result<()> {
    let owner = op.owner_of(md);
    let mode = op.chmod.unwrap_or(md.mode() & 0o7777);
    let ft = md.file_type();
    if ft.is_dir() {
        let exists_dir = rfs::statat(pfd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map(|st| rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory)
            .unwrap_or(false);
        if !exists_dir {
            remove_at(pfd, name.as_os_str())?;
            rfs::mkdirat(pfd, name, Mode::from_raw_mode(0o755))?;
        }
        let d = open_dir_at(pfd, name)?;
        finish(&d, owner, mode, None)?;
        copy_xattrs(src, &d)
    } else if ft.is_symlink() {
        let target = fs::read_link(src)?;
        remove_at(pfd, name.as_os_str())?;
        rfs::symlinkat(&target, pfd, name)?;
        rfs::chownat(
            pfd,
            name,
            Some(rfs::Uid::from_raw(owner.0)),
            Some(rfs::Gid::from_raw(owner.1)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    } else if ft.is_file() {
        let f = create_file(pfd, name)?;
        let mut out = fs::File::from(f);
        let mut inp = fs::File::open(src)?;
        io::copy(&mut inp, &mut out)?;
        let fd = OwnedFd::from(out);
        finish(&fd, owner, mode, Some(md.mtime()))?;
        // After the chown, which clears security.capability.
        copy_xattrs(src, &fd)
    } else {
        // Devices, fifos and sockets in a context are skipped, as docker does.
        Ok(())
    }
}

/// Gives `fd` the xattrs of `src` (`user.*`, `security.capability`, ...; not overlayfs' own),
/// as BuildKit's copy keeps them.
fn copy_xattrs(src: &Path, fd: &OwnedFd) -> io::Result<()> {
    for (k, v) in crate::image::layer::xattrs(src)? {
        match rfs::fsetxattr(fd, k.as_str(), &v, rfs::XattrFlags::empty()) {
            // A filesystem without xattrs, or one this namespace may not set: skipped.
            Ok(()) | Err(rustix::io::Errno::NOTSUP) | Err(rustix::io::Errno::PERM) => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("setxattr {k}: {e}"))),
        }
    }
    Ok(())
}

/// Replaces `name` in `pfd` by a new empty file.
fn create_file(pfd: &OwnedFd, name: &Path) -> io::Result<OwnedFd> {
    remove_at(pfd, name.as_os_str())?;
    Ok(rfs::openat(
        pfd,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?)
}

/// Owner, then mode (chown clears set-id bits), then mtime.
fn finish(fd: &OwnedFd, owner: (u32, u32), mode: u32, mtime: Option<i64>) -> io::Result<()> {
    rfs::fchown(
        fd,
        Some(rfs::Uid::from_raw(owner.0)),
        Some(rfs::Gid::from_raw(owner.1)),
    )?;
    rfs::fchmod(fd, Mode::from_raw_mode(mode))?;
    if let Some(t) = mtime {
        rfs::futimens(fd, &times(t))?;
    }
    Ok(())
}

fn times(t: i64) -> Timestamps {
    let ts = Timespec {
        tv_sec: t,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

/// A tar archive, plain or compressed with gzip, bzip2, xz or zstd (by content, as docker
/// decides: the name does not matter).
fn is_archive(p: &Path) -> bool {
    let Ok(f) = fs::File::open(p) else {
        return false;
    };
    let Ok(r) = decompressed(BufReader::new(f)) else {
        return false;
    };
    let mut head = Vec::new();
    let _ = r.take(512).read_to_end(&mut head);
    head.len() >= 262 && &head[257..262] == b"ustar"
}

/// `r` decompressed by the format its first bytes announce (gzip, bzip2, xz, zstd), else as is.
fn decompressed<'a>(mut r: BufReader<fs::File>) -> io::Result<Box<dyn Read + 'a>> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::read::MultiBzDecoder::new(r))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

/// Parses `--chmod` (octal).
pub fn parse_chmod(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("invalid --chmod={s}: only octal modes are supported"))
}

impl Builder<'_> {
    pub(super) fn copy_step(
        &self,
        st: &mut State,
        line: usize,
        a: &CopyArgs,
        add: bool,
        text: &str,
        done: &HashMap<usize, State>,
    ) -> BuildResult<()> {
        let mut paths = self.each_word(st, line, &a.paths)?;
        let dest_raw = paths.pop().expect("parser checked two paths");
        let wd = st.workdir();
        let mut dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{}", wd.trim_end_matches('/'), dest_raw)
        };
        // Cleaned as written (BuildKit's cleanPath): `/link/..` is `/` whatever `link` is; a
        // trailing `/` or `/.` says the destination is a directory.
        if dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.") {
            dest = format!("{}/", clean_abs(Path::new(&dest)).trim_end_matches('/'));
        } else {
            dest = clean_abs(Path::new(&dest));
        }
        let mut inline = Vec::new();
        let mut sources = Vec::new();
        for p in paths {
            match p
                .strip_prefix("<<")
                .map(|n| n.trim_start_matches('-').trim_matches(['"', '\'']))
            {
                Some(name) => {
                    let h = a
                        .heredocs
                        .iter()
                        .find(|h| h.name == name)
                        .ok_or_else(|| self.err(line, format!("heredoc {name} not found")))?;
                    let content = if h.quoted {
                        h.content.clone()
                    } else {
                        self.word(st, line, &h.content.replace('"', "\\\""))?
                    };
                    inline.push((name.to_string(), content));
                }
                None => sources.push(p),
            }
        }
        let remote_root = if add {
            self.fetch_remotes(line, a, &mut sources)?
        } else {
            None
        };
        let (area, m) = self.mount_rw(st, line)?;
        let merged = area.join("merged");
        let dst = Root::open(&merged).map_err(|e| self.err(line, e))?;
        let owner = match &a.chown {
            Some(c) => {
                let c = self.word(st, line, c)?;
                // A number is its own group unless one is given (BuildKit's chown by ID); a
                // name must be in the image's passwd.
                let by_id = c
                    .split(':')
                    .next()
                    .is_some_and(|u| u.parse::<u32>().is_ok());
                let owner = match by_id {
                    true => super::run::file_op_owner(&dst, &c),
                    false => super::run::lookup_user(&dst, &c),
                };
                let ids = owner.map_err(|e| self.err(line, format!("--chown={c}: {e}")))?;
                if let Some(why) = crate::idmap::unmapped(ids.0, ids.1) {
                    return Err(self.err(line, format!("--chown={c}: {why}")));
                }
                Some(ids)
            }
            None => None,
        };
        let chmod = match &a.chmod {
            Some(c) => Some(parse_chmod(&self.word(st, line, c)?).map_err(|e| self.err(line, e))?),
            None => None,
        };
        // The source root: the context, another stage (read-only overlay) or an image.
        let mut _src_mount = None;
        let src_tmp;
        let from_root;
        let (src_root, ignore) = match &a.from {
            None => match &remote_root {
                Some(r) => (r, None),
                None => (&self.context, Some(&self.ignore)),
            },
            Some(f) => {
                let f = self.word(st, line, f)?;
                let named = match self.df.stage(&f) {
                    None => self.opts.build_contexts.get(&f.to_ascii_lowercase()),
                    Some(_) => None,
                };
                if let Some(contexts::Named::Dir(d)) = named {
                    from_root =
                        Root::open(d).map_err(|e| self.err(line, format!("--from={f}: {e}")))?;
                } else {
                    let layers: Vec<PathBuf> = match (self.df.stage(&f), named) {
                        (Some(s), _) => done
                            .get(&s.index)
                            .ok_or_else(|| {
                                self.err(line, format!("COPY --from={f}: stage not built"))
                            })?
                            .layers
                            .iter()
                            .map(|l| l.dir.clone())
                            .collect(),
                        (None, named) => {
                            let r = match named {
                                Some(contexts::Named::Image(r)) => r.clone(),
                                _ => f.clone(),
                            };
                            let s = self.base_state(&r, line, &st.platform)?;
                            s.layers.iter().map(|l| l.dir.clone()).collect()
                        }
                    };
                    src_tmp = self.area()?;
                    let mm = overlay::mount_overlay(
                        &layers,
                        None,
                        &src_tmp.join("merged"),
                        &src_tmp.join("empty"),
                    )
                    .map_err(|e| self.err(line, e))?;
                    from_root = Root::open(mm.path()).map_err(|e| self.err(line, e))?;
                    _src_mount = Some(mm);
                }
                (&from_root, None)
            }
        };
        let op = CopyOp {
            src: src_root,
            ignore,
            sources,
            inline,
            dest,
            owner,
            keep_owners: a.from.is_some(),
            chmod,
            // Remote sources are never extracted.
            add: add && remote_root.is_none(),
            exclude: (!a.excludes.is_empty()).then(|| Ignore::parse(&a.excludes.join("\n"))),
            parents: a.parents,
            checksum: a.checksum.clone(),
        };
        let kw = if add { "ADD" } else { "COPY" };
        copy(&op, &dst).map_err(|e| self.err(line, format!("{kw} failed: {e}")))?;
        drop(dst);
        m.unmount().map_err(|e| self.err(line, e))?;
        let by = text.to_string();
        self.commit_layer(st, line, &area.join("upper"), &by)
    }

    /// ADD's URL and git sources: fetched into a staging directory of this step, which
    /// becomes the copy's source root (`sources` renamed into it). None if all are local.
    pub(super) fn fetch_remotes(
        &self,
        line: usize,
        a: &CopyArgs,
        sources: &mut Vec<String>,
    ) -> BuildResult<Option<Root>> {
        let remotes: Vec<Option<remote::Remote>> =
            sources.iter().map(|s| remote::classify(s)).collect();
        if remotes.iter().all(Option::is_none) {
            return Ok(None);
        }
        if remotes.iter().any(Option::is_none) {
            return Err(self.err(
                line,
                "ADD: URL and git sources cannot be mixed with local sources in one ADD",
            ));
        }
        let staging = self.area()?.join("remote");
        let mut names = Vec::new();
        for (i, r) in remotes.into_iter().flatten().enumerate() {
            if a.checksum.is_some() && matches!(r, remote::Remote::Git { .. }) {
                return Err(self.err(line, "ADD --checksum: not supported for git sources"));
            }
            let n = remote::fetch(&r, &staging.join(i.to_string()), a.keep_git_dir)
                .map_err(|e| self.err(line, format!("ADD: {e}")))?;
            names.push(format!("{i}/{n}"));
        }
        *sources = names;
        Root::open(&staging)
            .map(Some)
            .map_err(|e| self.err(line, e))
    }
}
