// readCheckpointShared(dir) -> Promise<{ tasks, files, memfds, mounts }>
//
// The images of a checkpoint that the verify activator reads at every restore
// (pstree.img, mm-PID.img, files.img, memfd.img, mountpoints-*.img), decoded
// with protobuf-c (proto/criu/images.proto) on a pool thread: a restore no
// longer waits for a worker thread's JavaScript. src/images/checkpoint.ts reads
// the same files in JavaScript for the CLI and stays the reference: the same
// bounds, checks, order and messages. What comes back is what
// src/images/vma.ts sharedMappings looks at: every task, and of its VMAs those
// that can share an object (SysV shm, shared memfd, shared anonymous, shared
// file), the files and memfd inodes they name and the mounts of those files.
// Every VMA is still checked.
//
//   tasks:  [{ pid, ppid, threads: number[], vmas: BigUint64Array [start, end, pgoff, shmid, prot, flags, status]... }]
//   files:  [{ kind: 'reg', id, name, mntId, size: bigint } | { kind: 'memfd', id, inodeId } | { kind: 'other', id, type }]
//   memfds: [{ inodeId, name, size: bigint, shmid }]
//   mounts: [{ mntId, rootDev, root, mountpoint }]
//
// A checkpoint that cannot be read rejects with an Error carrying `file` (a
// name in `dir`, '' for `dir` itself), `offset` and `detail`
// (src/native/index.ts makes it an ImageError).
#include "checkpoint_reader.h"

extern "C" {
#include "images.pb-c.h"
}

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

constexpr uint32_t kCommonMagic = 0x54564319;
constexpr uint32_t kPstreeMagic = 0x50273030, kMmMagic = 0x57492820, kFilesMagic = 0x56303138, kMemfdMagic = 0x48453499,
                   kMntsMagic = 0x55563928;
// the bounds of src/images/image-file.ts DEFAULT_LIMITS and of checkpoint.ts
constexpr size_t kMaxBytes = 64u << 20, kMaxEntries = 1000000;
constexpr size_t kPstreeMaxBytes = 16u << 20, kMaxTasks = 65536, kMaxMounts = 100000;
// What protobuf-c may allocate for one entry: the worker that read checkpoints in
// JavaScript had a 256 MiB heap; an mm image of 64 MiB of minimal VMAs would take more.
constexpr size_t kMaxDecodeBytes = 256u << 20;
// VMA status bits (criu/include/image.h) and MAP_SHARED, as src/images/vma.ts
constexpr uint32_t kFileShared = 1u << 7, kAnonShared = 1u << 8, kSysvipc = 1u << 10, kMemfd = 1u << 14, kMapShared = 0x01;

struct Failure {
  std::string file;
  uint64_t offset = 0;
  std::string detail;
};

std::string Hex32(uint32_t v) {
  char b[16];
  snprintf(b, sizeof(b), "0x%08x", v);
  return b;
}
std::string Hex64(uint64_t v) {
  char b[24];
  snprintf(b, sizeof(b), "0x%llx", static_cast<unsigned long long>(v));
  return b;
}
std::string ErrnoText(int e) {
  const char *name = strerrorname_np(e);
  return std::string(name ? name : "errno " + std::to_string(e)) + ": " + std::strerror(e);
}

// protobuf-c's allocations for one entry, bounded (an entry past the bound fails to decode).
struct Budget {
  size_t used = 0;
  static void *Alloc(void *data, size_t size) {
    auto *b = static_cast<Budget *>(data);
    if (size > kMaxDecodeBytes - b->used) return nullptr;
    auto *p = static_cast<size_t *>(malloc(size + sizeof(size_t) * 2));
    if (!p) return nullptr;
    p[0] = size;
    b->used += size;
    return p + 2;  // 16 bytes in: malloc's alignment is kept
  }
  static void Free(void *data, void *ptr) {
    if (!ptr) return;
    auto *p = static_cast<size_t *>(ptr) - 2;
    static_cast<Budget *>(data)->used -= p[0];
    free(p);
  }
};

struct Vma {
  uint64_t start, end, pgoff, shmid;
  uint32_t prot, flags, status;
};
struct Task {
  uint32_t pid, ppid;
  std::vector<uint32_t> threads;
  std::vector<Vma> vmas;  // those that can share an object
};
struct File {
  uint32_t id, type;
  int kind;  // 0 reg, 1 memfd, 2 other
  std::string name;
  int32_t mnt_id;
  uint64_t size;
  uint32_t inode_id;
};
struct MemfdInode {
  double inode_id;  // a JavaScript number, as checkpoint.ts makes it
  std::string name;
  uint64_t size;
  uint32_t shmid;
};
struct Mount {
  uint32_t mnt_id, root_dev;
  std::string root, mountpoint;
};

class Reader {
 public:
  Reader(int dirfd, Failure *fail) : dirfd_(dirfd), fail_(fail) {}

  // Reads `name` (nothing followed) into *out; *missing (when given) instead of failing when there is none.
  bool ReadFile(const std::string &name, size_t max_bytes, std::string *out, bool *missing = nullptr) {
    int fd = openat(dirfd_, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT && missing) {
        *missing = true;
        return true;
      }
      return Fail(name, 0, errno == ELOOP ? "cannot read: a symlink (not followed)" : "cannot read: " + ErrnoText(errno));
    }
    struct stat st;
    bool ok = fstat(fd, &st) == 0;
    if (!ok || !S_ISREG(st.st_mode)) {
      close(fd);
      return ok ? Fail(name, 0, "not a regular file") : Fail(name, 0, "cannot read: " + ErrnoText(errno));
    }
    if (static_cast<uint64_t>(st.st_size) > max_bytes) {
      close(fd);
      return Fail(name, 0,
                  std::to_string(st.st_size) + " bytes is larger than any image of this kind (limit " + std::to_string(max_bytes) + ")");
    }
    out->resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < out->size()) {
      ssize_t n = read(fd, &(*out)[got], out->size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int e = errno;
        close(fd);
        return Fail(name, 0, "cannot read: " + ErrnoText(e));
      }
      if (n == 0) break;  // shorter than it was: what is there
      got += static_cast<size_t>(n);
    }
    out->resize(got);
    close(fd);
    if (missing) *missing = false;
    return true;
  }

  // Calls each(bytes, length, offset) for every entry of image `name` (decodeEntries).
  template <typename Each>
  bool Entries(const std::string &name, const std::string &buf, uint32_t magic, size_t max_entries, Each each) {
    const auto *b = reinterpret_cast<const uint8_t *>(buf.data());
    if (buf.size() < 8)
      return Fail(name, 0, "truncated: " + std::to_string(buf.size()) + " bytes, a CRIU image starts with an 8-byte magic header");
    // the bytes are not echoed: the file may be anything
    if (U32(b) != kCommonMagic) return Fail(name, 0, "not a CRIU image: no magic " + Hex32(kCommonMagic) + " at offset 0");
    if (U32(b + 4) != magic)
      return Fail(name, 4, "wrong kind of CRIU image: magic " + Hex32(U32(b + 4)) + " at offset 4, expected " + Hex32(magic));
    size_t off = 8, count = 0;
    while (off < buf.size()) {
      const size_t left = buf.size() - off;
      if (left < 4)
        return Fail(name, off, "truncated: " + std::to_string(left) + " byte(s) where an entry length (4 bytes) starts");
      if (count >= max_entries) return Fail(name, off, "more than " + std::to_string(max_entries) + " entries");
      const uint32_t len = U32(b + off);
      if (len > left - 4)
        return Fail(name, off,
                    "truncated: entry at offset " + std::to_string(off) + " claims " + std::to_string(len) + " bytes, " +
                        std::to_string(left - 4) + " left");
      if (!each(b + off + 4, static_cast<size_t>(len), off)) return false;
      off += 4 + len;
      count++;
    }
    return true;
  }

  // Unpacks one entry with a bounded allocator; null (and the failure set) when it does not decode.
  template <typename M>
  M *Unpack(M *(*unpack)(ProtobufCAllocator *, size_t, const uint8_t *), const std::string &name, const uint8_t *p, size_t len,
            size_t off) {
    M *m = unpack(&alloc_, len, p);
    if (!m) Fail(name, off, "corrupt entry at offset " + std::to_string(off) + " (" + std::to_string(len) + " bytes): not a valid entry");
    return m;
  }
  ProtobufCAllocator *Allocator() { return &alloc_; }

  bool Fail(const std::string &name, uint64_t off, std::string detail) {
    fail_->file = name;
    fail_->offset = off;
    fail_->detail = std::move(detail);
    return false;
  }

 private:
  static uint32_t U32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24; }
  int dirfd_;
  Failure *fail_;
  Budget budget_;
  ProtobufCAllocator alloc_ = {Budget::Alloc, Budget::Free, &budget_};
};

// A JavaScript array of one object per element, each filled by `fill(element, object)`.
template <typename T, typename Fill>
Napi::Array ToArray(Napi::Env env, const std::vector<T> &v, Fill fill) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    fill(v[i], o);
    a.Set(i, o);
  }
  return a;
}

// Whether src/images/vma.ts objectOf gives this VMA an object.
bool MaySharedObject(const Vma &v) {
  if (v.status & kSysvipc) return true;
  if (v.status & kMemfd) return v.flags & kMapShared;
  return v.status & (kAnonShared | kFileShared);
}

class ReadCheckpointWorker : public Napi::AsyncWorker {
 public:
  ReadCheckpointWorker(Napi::Env env, std::string dir)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), dir_(std::move(dir)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    // checkImageDir: a readable real directory (no symlink followed)
    int dirfd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0) {
      int e = errno;
      failed_ = true;
      fail_.detail = e == ELOOP || e == ENOTDIR ? "not a directory (symlinks are not followed)"
                     : e == EACCES              ? "checkpoint directory is not readable"
                                                : "cannot open checkpoint directory: " + ErrnoText(e);
      return;
    }
    if (faccessat(AT_FDCWD, dir_.c_str(), R_OK | X_OK, 0) != 0) {
      close(dirfd);
      failed_ = true;
      fail_.detail = "checkpoint directory is not readable";
      return;
    }
    failed_ = !Read(dirfd);
    close(dirfd);
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (failed_) {
      Napi::Error e = Napi::Error::New(env, (fail_.file.empty() ? dir_ : fail_.file) + ": " + fail_.detail);
      e.Set("file", Napi::String::New(env, fail_.file));
      e.Set("offset", Napi::Number::New(env, static_cast<double>(fail_.offset)));
      e.Set("detail", Napi::String::New(env, fail_.detail));
      deferred_.Reject(e.Value());
      return;
    }
    auto big = [&](uint64_t v) { return Napi::BigInt::New(env, v); };
    Napi::Object r = Napi::Object::New(env);
    r.Set("tasks", ToArray(env, tasks_, [&](const Task &t, Napi::Object o) {
      o.Set("pid", t.pid);
      o.Set("ppid", t.ppid);
      Napi::Array threads = Napi::Array::New(env, t.threads.size());
      for (size_t j = 0; j < t.threads.size(); j++) threads.Set(j, t.threads[j]);
      o.Set("threads", threads);
      auto vmas = Napi::BigUint64Array::New(env, t.vmas.size() * 7);
      for (size_t j = 0; j < t.vmas.size(); j++) {
        const Vma &v = t.vmas[j];
        const uint64_t f[7] = {v.start, v.end, v.pgoff, v.shmid, v.prot, v.flags, v.status};
        memcpy(vmas.Data() + j * 7, f, sizeof(f));
      }
      o.Set("vmas", vmas);
    }));
    static const char *const kinds[] = {"reg", "memfd", "other"};
    r.Set("files", ToArray(env, files_, [&](const File &f, Napi::Object o) {
      o.Set("kind", kinds[f.kind]);
      o.Set("id", f.id);
      if (f.kind == 0) {
        o.Set("name", Napi::String::New(env, f.name));
        o.Set("mntId", f.mnt_id);
        o.Set("size", big(f.size));
      } else if (f.kind == 1) {
        o.Set("inodeId", f.inode_id);
      } else {
        o.Set("type", f.type);
      }
    }));
    r.Set("memfds", ToArray(env, memfds_, [&](const MemfdInode &m, Napi::Object o) {
      o.Set("inodeId", m.inode_id);
      o.Set("name", Napi::String::New(env, m.name));
      o.Set("size", big(m.size));
      o.Set("shmid", m.shmid);
    }));
    r.Set("mounts", ToArray(env, mounts_, [&](const Mount &m, Napi::Object o) {
      o.Set("mntId", m.mnt_id);
      o.Set("rootDev", m.root_dev);
      o.Set("root", Napi::String::New(env, m.root));
      o.Set("mountpoint", Napi::String::New(env, m.mountpoint));
    }));
    deferred_.Resolve(r);
  }
  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  // readCheckpoint, step by step; false with fail_ set at the first problem.
  bool Read(int dirfd) {
    Reader r(dirfd, &fail_);
    std::string buf;
    const std::string pstree = "pstree.img";
    if (!r.ReadFile(pstree, kPstreeMaxBytes, &buf)) return false;
    bool ok = r.Entries(pstree, buf, kPstreeMagic, kMaxTasks, [&](const uint8_t *p, size_t len, size_t off) {
      Criu__PstreeEntry *e = r.Unpack(criu__pstree_entry__unpack, pstree, p, len, off);
      if (!e) return false;
      tasks_.push_back(Task{e->pid, e->ppid, std::vector<uint32_t>(e->threads, e->threads + e->n_threads), {}});
      criu__pstree_entry__free_unpacked(e, r.Allocator());
      return true;
    });
    if (!ok) return false;
    if (tasks_.empty()) return r.Fail(pstree, 8, "no task in the process tree");
    for (size_t i = 0; i < tasks_.size(); i++)
      if (!tasks_[i].pid) return r.Fail(pstree, 8, "entry " + std::to_string(i) + " has no pid");

    for (Task &t : tasks_) {
      const std::string mm = "mm-" + std::to_string(t.pid) + ".img";
      bool missing = false;
      if (!r.ReadFile(mm, kMaxBytes, &buf, &missing)) return false;
      if (missing) continue;
      ok = r.Entries(mm, buf, kMmMagic, 1, [&](const uint8_t *p, size_t len, size_t off) {
        Criu__MmEntry *e = r.Unpack(criu__mm_entry__unpack, mm, p, len, off);
        if (!e) return false;
        bool good = true;
        for (size_t j = 0; j < e->n_vmas; j++) {
          const Criu__VmaEntry *v = e->vmas[j];
          if (v->end <= v->start) {
            good = r.Fail(mm, 8, "VMA " + std::to_string(j) + " ends (" + Hex64(v->end) + ") before it starts (" + Hex64(v->start) + ")");
            break;
          }
          Vma x{v->start, v->end, v->pgoff, v->shmid, v->prot, v->flags, v->status};
          if (MaySharedObject(x)) t.vmas.push_back(x);
        }
        criu__mm_entry__free_unpacked(e, r.Allocator());
        return good;
      });
      if (!ok) return false;
    }

    // the files those VMAs name (memfd and shared file mappings: shmid is a files.img id)
    std::set<uint32_t> want_files;
    for (const Task &t : tasks_)
      for (const Vma &v : t.vmas)
        if (!(v.status & kSysvipc) && (v.status & (kMemfd | kFileShared)) && v.shmid <= UINT32_MAX) want_files.insert(static_cast<uint32_t>(v.shmid));
    std::set<uint32_t> want_inodes;
    std::set<int64_t> want_mounts;  // a file's mnt_id is signed (-1: none), a mount's unsigned
    const std::string files = "files.img";
    bool missing = false;
    if (!r.ReadFile(files, kMaxBytes, &buf, &missing)) return false;
    if (!missing) {
      std::map<uint32_t, File> byId;  // a later entry of an id wins, as a Map.set
      ok = r.Entries(files, buf, kFilesMagic, kMaxEntries, [&](const uint8_t *p, size_t len, size_t off) {
        Criu__FileEntry *e = r.Unpack(criu__file_entry__unpack, files, p, len, off);
        if (!e) return false;
        if (want_files.count(e->id)) {
          File f{e->id, e->type, 2, "", -1, 0, 0};
          if (e->reg) {
            f.kind = 0;
            f.name = e->reg->name ? e->reg->name : "";
            f.mnt_id = e->reg->mnt_id;
            f.size = e->reg->size;
          } else if (e->memfd) {
            f.kind = 1;
            f.inode_id = e->memfd->inode_id;
          }
          byId[e->id] = std::move(f);
        }
        criu__file_entry__free_unpacked(e, r.Allocator());
        return true;
      });
      if (!ok) return false;
      for (auto &[id, f] : byId) {
        if (f.kind == 1) want_inodes.insert(f.inode_id);
        if (f.kind == 0) want_mounts.insert(f.mnt_id);
        files_.push_back(std::move(f));
      }
    }

    const std::string memfd = "memfd.img";
    if (!r.ReadFile(memfd, kMaxBytes, &buf, &missing)) return false;
    if (!missing) {
      std::map<double, MemfdInode> byInode;
      ok = r.Entries(memfd, buf, kMemfdMagic, kMaxEntries, [&](const uint8_t *p, size_t len, size_t off) {
        Criu__MemfdInodeEntry *e = r.Unpack(criu__memfd_inode_entry__unpack, memfd, p, len, off);
        if (!e) return false;
        const double inode = static_cast<double>(e->inode_id);  // Number(big(...)) in checkpoint.ts
        if (inode <= UINT32_MAX && want_inodes.count(static_cast<uint32_t>(inode)))
          byInode[inode] = MemfdInode{inode, e->name ? e->name : "", e->size, e->shmid};
        criu__memfd_inode_entry__free_unpacked(e, r.Allocator());
        return true;
      });
      if (!ok) return false;
      for (auto &[_, m] : byInode) memfds_.push_back(std::move(m));
    }

    // mountpoints-<id>.img, in name order (Node's readdir sorts); a later mount of an id wins
    std::vector<std::string> names;
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : nullptr;
    if (!d) {
      if (fd >= 0) close(fd);
      return r.Fail("", 0, "cannot list: " + ErrnoText(errno));
    }
    while (struct dirent *de = readdir(d)) {
      const char *n = de->d_name;
      const size_t l = strlen(n);
      if (l < 17 || l > 26 || strncmp(n, "mountpoints-", 12) || strcmp(n + l - 4, ".img")) continue;
      if (std::all_of(n + 12, n + l - 4, [](char c) { return c >= '0' && c <= '9'; })) names.emplace_back(n);
    }
    closedir(d);
    std::sort(names.begin(), names.end());
    std::map<uint32_t, Mount> byMount;
    for (const std::string &name : names) {
      if (!r.ReadFile(name, kMaxBytes, &buf)) return false;
      ok = r.Entries(name, buf, kMntsMagic, kMaxMounts, [&](const uint8_t *p, size_t len, size_t off) {
        Criu__MntEntry *e = r.Unpack(criu__mnt_entry__unpack, name, p, len, off);
        if (!e) return false;
        if (want_mounts.count(static_cast<int64_t>(e->mnt_id)))
          byMount[e->mnt_id] = Mount{e->mnt_id, e->root_dev, e->root ? e->root : "", e->mountpoint ? e->mountpoint : ""};
        criu__mnt_entry__free_unpacked(e, r.Allocator());
        return true;
      });
      if (!ok) return false;
    }
    for (auto &[_, m] : byMount) mounts_.push_back(std::move(m));
    return true;
  }

  Napi::Promise::Deferred deferred_;
  std::string dir_;
  bool failed_ = false;
  Failure fail_;
  std::vector<Task> tasks_;
  std::vector<File> files_;
  std::vector<MemfdInode> memfds_;
  std::vector<Mount> mounts_;
};

}  // namespace

Napi::Value ReadCheckpointShared(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "readCheckpointShared(dir: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string dir = info[0].As<Napi::String>();
  if (dir.empty() || dir.size() > 4096 || dir.find('\0') != std::string::npos) {
    Napi::TypeError::New(env, "readCheckpointShared: dir must be a path").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto *w = new ReadCheckpointWorker(env, std::move(dir));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}
