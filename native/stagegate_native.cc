// stagegate native addon: the few Linux calls Node.js does not expose.
//   pidfdOpen(pid)                 -> fd            (pidfd_open(2))
//   pidfdSendSignal(fd, signo)     -> undefined     (pidfd_send_signal(2))
//   close(fd)                      -> undefined
//   processVmReadMany(pid, addrs: BigUint64Array, len)
//                                  -> Promise<Buffer> (len bytes at each address, one after another;
//                                     one process_vm_readv(2) per IOV_MAX of them, off the JS thread)
//   observeTree(root, wanted: BigUint64Array [nsPid, start, end, pgoff, nSamples]...,
//               samples: BigUint64Array of object offsets, nSamples per wanted mapping in turn)
//                                  -> Promise<{ fields: BigUint64Array, digests: BigUint64Array }>
//                                     (per wanted mapping, OBSERVED_FIELDS values: the task's host pid in
//                                     the tree rooted at `root`, the live VMA at or around `start` from
//                                     /proc/PID/maps, the object behind it from /proc/PID/map_files, and
//                                     whether its pages were sampled; per sample the first 64 bits of the
//                                     SHA-1 of its page, read with process_vm_readv(2); off the JS thread)
//   kfdCriuOp(device, op, pid)     -> Promise<void>   (AMDKFD_IOC_CRIU_OP on a KFD device, off the JS thread)
//   lockFile(path)                 -> fd            (open + flock(LOCK_EX|LOCK_NB); close(fd) releases)
//   readCheckpointShared(dir)      -> Promise<{ tasks, files, memfds, mounts }> (checkpoint_reader.cc)
// Failures throw/reject an Error with `errno` (number) and `syscall` set;
// src/native/index.ts maps them to typed errors.
#include <napi.h>
#include <openssl/evp.h>  // Node.js exports its OpenSSL: the digest the JavaScript side uses

#include "checkpoint_reader.h"

#include <cerrno>
#include <cstdio>
#include <csignal>
#include <cstring>
#include <string>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <climits>
#include <deque>
#include <map>
#include <tuple>
#include <algorithm>
#include <vector>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

namespace {

Napi::Error ErrnoError(Napi::Env env, int err, const char *syscall) {
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + ": " + std::strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

bool Int(const Napi::CallbackInfo &info, size_t i, int64_t min, int64_t max, int64_t *out) {
  if (info.Length() <= i || !info[i].IsNumber()) return false;
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)) || d < min || d > max) return false;
  *out = static_cast<int64_t>(d);
  return true;
}

Napi::Value PidfdOpen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t pid;
  if (!Int(info, 0, 1, INT32_MAX, &pid)) {
    Napi::TypeError::New(env, "pidfdOpen(pid): pid must be a positive integer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  long fd = syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0);
  if (fd < 0) {
    ErrnoError(env, errno, "pidfd_open").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(fd));
}

// The daemon holds one descriptor per hook connection. Node already raises
// the soft open-file limit to the hard one; a privileged daemon
// (CAP_SYS_RESOURCE) also raises the hard limit to fs.nr_open. Returns the
// soft limit {before, after}.
Napi::Value RaiseNofileLimit(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
    ErrnoError(env, errno, "getrlimit").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("before", Napi::Number::New(env, static_cast<double>(rl.rlim_cur)));
  unsigned long nr_open = 0;
  if (FILE *f = std::fopen("/proc/sys/fs/nr_open", "r")) {
    if (std::fscanf(f, "%lu", &nr_open) != 1) nr_open = 0;
    std::fclose(f);
  }
  if (nr_open > rl.rlim_max) {
    struct rlimit more = {nr_open, nr_open};
    if (setrlimit(RLIMIT_NOFILE, &more) == 0) rl = more;  // EPERM without the privilege: keep the hard limit
  }
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
      ErrnoError(env, errno, "setrlimit").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  out.Set("after", Napi::Number::New(env, static_cast<double>(rl.rlim_cur)));
  return out;
}

// Orphaned descendants (e.g. the tasks of a criu that was killed mid-restore)
// are re-parented to this process instead of init, so it can find them.
Napi::Value SetChildSubreaper(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
    ErrnoError(env, errno, "prctl").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Value PidfdSendSignal(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd, sig;
  if (!Int(info, 0, 0, INT32_MAX, &fd) || !Int(info, 1, 0, 64, &sig)) {
    Napi::TypeError::New(env, "pidfdSendSignal(fd, signo): integers expected").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (syscall(SYS_pidfd_send_signal, static_cast<int>(fd), static_cast<int>(sig), nullptr, 0) < 0) {
    ErrnoError(env, errno, "pidfd_send_signal").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Value Close(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!Int(info, 0, 0, INT32_MAX, &fd)) {
    Napi::TypeError::New(env, "close(fd): integer expected").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (close(static_cast<int>(fd)) < 0) ErrnoError(env, errno, "close").ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value LockFile(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "lockFile(path: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    ErrnoError(env, errno, "open").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int err = errno;
    close(fd);
    ErrnoError(env, err, "flock").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// Reads `len` bytes at each of `addrs` of process `pid` into `buf` (one after
// another), with as few process_vm_readv(2) calls as IOV_MAX allows: verifying
// a tree samples hundreds of pages. 0, or an errno with the first address
// that could not be read in *bad.
int ReadMany(pid_t pid, const std::vector<uint64_t> &addrs, size_t len, std::vector<unsigned char> *buf, uint64_t *bad) {
  const size_t n = addrs.size();
  buf->resize(n * len);
  std::vector<struct iovec> local, remote;
  size_t i = 0, off = 0;  // the next byte to read: `off` into the read at addrs[i]
  while (i < n) {
    const size_t count = n - i < IOV_MAX ? n - i : IOV_MAX;
    local.resize(count);
    remote.resize(count);
    for (size_t k = 0; k < count; k++) {
      const size_t skip = k == 0 ? off : 0;
      local[k] = {buf->data() + (i + k) * len + skip, len - skip};
      remote[k] = {reinterpret_cast<void *>(addrs[i + k] + skip), len - skip};
    }
    ssize_t got = process_vm_readv(pid, local.data(), count, remote.data(), count, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      *bad = addrs[i] + off;
      return got < 0 ? errno : EFAULT;
    }
    // a short read stops inside (or at the start of) the read that faulted: the next call reports it
    for (size_t left = static_cast<size_t>(got); left > 0;) {
      const size_t rest = len - off;
      if (left >= rest) {
        left -= rest;
        i++;
        off = 0;
      } else {
        off += left;
        left = 0;
      }
    }
  }
  return 0;
}

// `len` bytes at each of many addresses (ReadMany), off the JS thread.
class VmReadManyWorker : public Napi::AsyncWorker {
 public:
  VmReadManyWorker(Napi::Env env, pid_t pid, std::vector<uint64_t> addrs, size_t len)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), pid_(pid), addrs_(std::move(addrs)), len_(len) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override { err_ = ReadMany(pid_, addrs_, len_, &buf_, &bad_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      Napi::Error e = ErrnoError(env, err_, "process_vm_readv");
      e.Set("address", Napi::BigInt::New(env, bad_));
      deferred_.Reject(e.Value());
      return;
    }
    // handed over, not copied: the pages of a tree are megabytes
    auto *owned = new std::vector<unsigned char>(std::move(buf_));
    deferred_.Resolve(Napi::Buffer<unsigned char>::New(env, owned->data(), owned->size(),
                                                       [](Napi::Env, unsigned char *, std::vector<unsigned char> *o) { delete o; }, owned));
  }
  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  pid_t pid_;
  std::vector<uint64_t> addrs_;
  size_t len_;
  std::vector<unsigned char> buf_;
  int err_ = 0;
  uint64_t bad_ = 0;
};

Napi::Value ProcessVmReadMany(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t pid, len;
  if (!Int(info, 0, 1, INT32_MAX, &pid) || info.Length() < 3 || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array || !Int(info, 2, 1, int64_t(1) << 30, &len)) {
    Napi::TypeError::New(env, "processVmReadMany(pid, addrs: BigUint64Array, 0 < len <= 1 GiB)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto addrs = info[1].As<Napi::TypedArrayOf<uint64_t>>();
  if (addrs.ElementLength() * static_cast<size_t>(len) > (size_t(1) << 30)) {
    Napi::RangeError::New(env, "processVmReadMany: more than 1 GiB at once").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<uint64_t> copy(addrs.Data(), addrs.Data() + addrs.ElementLength());
  auto *w = new VmReadManyWorker(env, static_cast<pid_t>(pid), std::move(copy), static_cast<size_t>(len));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// A restored tree's mappings as the verify activator needs them, in one
// call off the JS thread: the tree's tasks (children of every thread, breadth
// first from the root), each task's pid in its innermost pid namespace
// (NSpid), its VMAs, and the object behind each wanted mapping. In
// JavaScript these reads and their parsing cost ~1.5 ms of the daemon's main
// thread per tree of 3 tasks (issue #11).
namespace observed {
// values per wanted mapping in the request and fields per wanted mapping in the result
enum : size_t { kWantPid, kWantStart, kWantEnd, kWantPgoff, kWantSamples, kWanted };
enum : size_t { kHostPid, kFound, kVmaStart, kVmaEnd, kPerms, kDev, kIno, kStatErrno, kSampled, kFields };
// kFound: the task is not in the tree / a VMA starts at `start` / one contains it / none does
enum : uint64_t { kNoTask = 0, kAt = 1, kAround = 2, kNone = 3 };
constexpr size_t kMaxTasks = 65536;             // as MAX_TREE_TASKS of the hook
constexpr size_t kMaxProcFile = size_t(64) << 20;  // maps of vm.max_map_count VMAs are a few MB
constexpr uint64_t kPage = 4096;
constexpr uint64_t kMaxSamples = 64;  // per mapping, as MAX_SAMPLES of src/core/verify.ts

// The whole of a /proc file (they report no size), at most kMaxProcFile. 0, or an errno.
int ReadAll(const std::string &path, std::string *out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  out->clear();
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      return e;
    }
    if (n == 0) break;
    if (out->size() + static_cast<size_t>(n) > kMaxProcFile) {
      close(fd);
      return EFBIG;
    }
    out->append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return 0;
}

struct Vma {
  uint64_t start, end, perms;
};

// "start-end perms ..." lines; perms packed as four bytes ('r', 'w', 'x', 's' or '-'/'p').
std::vector<Vma> ParseMaps(const std::string &text) {
  std::vector<Vma> out;
  const char *p = text.c_str(), *end = p + text.size();
  while (p < end) {
    const char *nl = static_cast<const char *>(memchr(p, '\n', static_cast<size_t>(end - p)));
    if (!nl) nl = end;
    char *q;
    uint64_t s = strtoull(p, &q, 16);
    if (q < nl && *q == '-') {
      uint64_t e = strtoull(q + 1, &q, 16);
      if (q + 5 <= nl && *q == ' ') {
        uint64_t perms = 0;
        for (int i = 0; i < 4; i++) perms |= static_cast<uint64_t>(static_cast<unsigned char>(q[1 + i])) << (8 * i);
        out.push_back({s, e, perms});
      }
    }
    p = nl + 1;
  }
  return out;
}

// Pid in the innermost pid namespace (the last field of NSpid); `host` without one.
pid_t InnermostPid(pid_t host, bool *gone) {
  std::string status;
  if (ReadAll("/proc/" + std::to_string(host) + "/status", &status)) {
    *gone = true;
    return 0;
  }
  size_t at = status.find("\nNSpid:");
  if (at == std::string::npos) return host;
  size_t eol = status.find('\n', at + 1);
  std::string line = status.substr(at + 7, eol == std::string::npos ? std::string::npos : eol - at - 7);
  size_t last = line.find_last_not_of(" \t");
  if (last == std::string::npos) return host;
  size_t first = line.find_last_of(" \t", last);
  return static_cast<pid_t>(strtol(line.c_str() + (first == std::string::npos ? 0 : first + 1), nullptr, 10));
}

// The tree rooted at `root` (host pids), breadth first; tasks gone meanwhile are left out.
std::vector<pid_t> TreePids(pid_t root) {
  std::vector<pid_t> seen;
  std::deque<pid_t> queue{root};
  std::string children;
  while (!queue.empty() && seen.size() < kMaxTasks) {
    pid_t p = queue.front();
    queue.pop_front();
    std::string dir = "/proc/" + std::to_string(p) + "/task";
    DIR *d = opendir(dir.c_str());
    if (!d) continue;  // gone
    seen.push_back(p);
    while (struct dirent *t = readdir(d)) {
      if (t->d_name[0] < '0' || t->d_name[0] > '9') continue;
      if (ReadAll(dir + "/" + t->d_name + "/children", &children)) continue;  // thread gone meanwhile
      const char *c = children.c_str();
      for (char *q;; c = q) {
        long v = strtol(c, &q, 10);
        if (q == c) break;
        if (v > 0) queue.push_back(static_cast<pid_t>(v));
      }
    }
    closedir(d);
  }
  return seen;
}
}  // namespace observed

class ObserveTreeWorker : public Napi::AsyncWorker {
 public:
  ObserveTreeWorker(Napi::Env env, pid_t root, std::vector<uint64_t> wanted, std::vector<uint64_t> samples)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        root_(root),
        wanted_(std::move(wanted)),
        samples_(std::move(samples)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    using namespace observed;
    std::map<pid_t, pid_t> host;  // innermost pid -> host pid; a later task wins, as a JS Map built from the list
    for (pid_t p : TreePids(root_)) {
      bool gone = false;
      pid_t ns = InnermostPid(p, &gone);
      if (!gone) host[ns] = p;
    }
    const size_t n = wanted_.size() / kWanted;
    out_.assign(n * kFields, 0);
    digests_.assign(samples_.size(), 0);
    std::map<pid_t, std::vector<Vma>> maps;
    // The pages to read, per host pid: each address and the digest it fills. The
    // first mapping of an object range samples it; later ones of the same range
    // (same object, offset and size: the same page-cache pages) copy its digests.
    std::map<pid_t, std::vector<std::pair<uint64_t, size_t>>> pages;
    // range -> its first sampled mapping's first sample index and count
    std::map<std::tuple<uint64_t, uint64_t, uint64_t, uint64_t>, std::pair<size_t, size_t>> sampled_by;
    struct Copy {
      size_t from, to, count;  // first sample index of the range's first mapping, of this one; samples
    };
    std::vector<Copy> copies;
    std::string text;
    size_t next_sample = 0;
    for (size_t i = 0; i < n; i++) {
      uint64_t *o = &out_[i * kFields];
      const uint64_t *w = &wanted_[i * kWanted];
      const uint64_t start = w[kWantStart], end = w[kWantEnd], pgoff = w[kWantPgoff], count = w[kWantSamples];
      const size_t first_sample = next_sample;
      next_sample += count;
      // a pid past pid_t's range names no task (cast, it would alias a real one)
      auto h = w[kWantPid] > INT32_MAX ? host.end() : host.find(static_cast<pid_t>(w[kWantPid]));
      if (h == host.end()) continue;  // kNoTask
      o[kHostPid] = static_cast<uint64_t>(h->second);
      auto m = maps.find(h->second);
      if (m == maps.end()) {
        std::string path = "/proc/" + std::to_string(h->second) + "/maps";
        if (int e = ReadAll(path, &text)) {
          err_ = e;
          what_ = "read " + path;
          return;
        }
        m = maps.emplace(h->second, ParseMaps(text)).first;
      }
      const Vma *at = nullptr, *around = nullptr;
      for (const Vma &v : m->second) {
        if (v.start == start) {
          at = &v;
          break;
        }
        if (!around && v.start <= start && start < v.end) around = &v;
      }
      const Vma *v = at ? at : around;
      o[kFound] = at ? kAt : around ? kAround : kNone;
      if (!v) continue;
      o[kVmaStart] = v->start;
      o[kVmaEnd] = v->end;
      o[kPerms] = v->perms;
      if (!at || v->end != end) continue;
      char path[96];
      snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", static_cast<int>(h->second), static_cast<unsigned long long>(start),
               static_cast<unsigned long long>(end));
      struct stat st;
      if (stat(path, &st) != 0) {
        o[kStatErrno] = static_cast<uint64_t>(errno);
        continue;
      }
      o[kDev] = static_cast<uint64_t>(st.st_dev);
      o[kIno] = static_cast<uint64_t>(st.st_ino);
      // only a readable shared mapping is sampled (perms as /proc shows them: "r??s")
      if (count == 0 || (v->perms & 0xff) != 'r' || ((v->perms >> 24) & 0xff) != 's') continue;
      o[kSampled] = 1;
      auto key = std::make_tuple(o[kDev], o[kIno], pgoff, end - start);
      auto first = sampled_by.find(key);
      // copied only when it asks for the very same offsets (a caller derives them from the range)
      if (first != sampled_by.end() && first->second.second == count &&
          std::equal(samples_.begin() + first_sample, samples_.begin() + first_sample + count, samples_.begin() + first->second.first)) {
        copies.push_back({first->second.first, first_sample, static_cast<size_t>(count)});
        continue;
      }
      if (first == sampled_by.end()) sampled_by.emplace(key, std::make_pair(first_sample, static_cast<size_t>(count)));
      auto &want = pages[h->second];
      for (size_t k = 0; k < count; k++) want.emplace_back(start + (samples_[first_sample + k] - pgoff), first_sample + k);
    }
    std::vector<uint64_t> addrs;
    std::vector<unsigned char> buf;
    for (auto &[pid, want] : pages) {
      addrs.clear();
      for (auto &p : want) addrs.push_back(p.first);
      uint64_t bad = 0;
      if (int e = ReadMany(pid, addrs, kPage, &buf, &bad)) {
        err_ = e;
        what_ = "process_vm_readv";
        bad_pid_ = pid;
        bad_ = bad;
        return;
      }
      for (size_t k = 0; k < want.size(); k++) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        if (!EVP_Digest(buf.data() + k * kPage, kPage, md, &len, EVP_sha1(), nullptr) || len < 8) {
          err_ = EIO;
          what_ = "EVP_Digest(SHA-1)";
          return;
        }
        uint64_t d = 0;
        for (int b = 0; b < 8; b++) d = (d << 8) | md[b];
        digests_[want[k].second] = d;
      }
    }
    for (const Copy &c : copies) std::copy_n(digests_.begin() + c.from, c.count, digests_.begin() + c.to);
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      Napi::Error e = ErrnoError(env, err_, what_.c_str());
      if (bad_pid_) {
        e.Set("pid", Napi::Number::New(env, bad_pid_));
        e.Set("address", Napi::BigInt::New(env, bad_));
      }
      deferred_.Reject(e.Value());
      return;
    }
    Napi::Object r = Napi::Object::New(env);
    auto f = Napi::BigUint64Array::New(env, out_.size());
    if (!out_.empty()) memcpy(f.Data(), out_.data(), out_.size() * sizeof(uint64_t));
    auto d = Napi::BigUint64Array::New(env, digests_.size());
    if (!digests_.empty()) memcpy(d.Data(), digests_.data(), digests_.size() * sizeof(uint64_t));
    r.Set("fields", f);
    r.Set("digests", d);
    deferred_.Resolve(r);
  }
  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  pid_t root_;
  std::vector<uint64_t> wanted_;
  std::vector<uint64_t> samples_;
  std::vector<uint64_t> out_;
  std::vector<uint64_t> digests_;
  int err_ = 0;
  std::string what_;
  pid_t bad_pid_ = 0;
  uint64_t bad_ = 0;
};

// Checks what a caller may ask: well-formed arrays, at most kMaxSamples pages
// per mapping, each page inside its mapping's object range.
Napi::Value ObserveTree(const Napi::CallbackInfo &info) {
  using namespace observed;
  Napi::Env env = info.Env();
  const char *usage = "observeTree(root, wanted: BigUint64Array of [nsPid, start, end, pgoff, nSamples]..., samples: BigUint64Array)";
  auto big = [&](size_t i) {
    return info.Length() > i && info[i].IsTypedArray() && info[i].As<Napi::TypedArray>().TypedArrayType() == napi_biguint64_array;
  };
  int64_t root;
  if (!Int(info, 0, 1, INT32_MAX, &root) || !big(1) || !big(2) || info[1].As<Napi::TypedArray>().ElementLength() % kWanted != 0 ||
      info[1].As<Napi::TypedArray>().ElementLength() / kWanted > kMaxTasks * 64) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto wanted = info[1].As<Napi::TypedArrayOf<uint64_t>>();
  auto samples = info[2].As<Napi::TypedArrayOf<uint64_t>>();
  std::vector<uint64_t> w(wanted.Data(), wanted.Data() + wanted.ElementLength());
  std::vector<uint64_t> sm(samples.Data(), samples.Data() + samples.ElementLength());
  size_t at = 0;
  for (size_t i = 0; i < w.size(); i += kWanted) {
    const uint64_t start = w[i + kWantStart], end = w[i + kWantEnd], pgoff = w[i + kWantPgoff], count = w[i + kWantSamples];
    bool ok = start <= end && count <= kMaxSamples && count <= sm.size() - at;
    for (uint64_t k = 0; ok && k < count; k++) {
      const uint64_t off = sm[at + k];
      ok = off >= pgoff && off % kPage == 0 && off - pgoff <= end - start && end - start - (off - pgoff) >= kPage;
    }
    if (!ok) {
      Napi::RangeError::New(env, std::string(usage) + ": a mapping's samples must be at most 64 pages inside it")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    at += count;
  }
  if (at != sm.size()) {
    Napi::RangeError::New(env, std::string(usage) + ": samples left over").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto *worker = new ObserveTreeWorker(env, static_cast<pid_t>(root), std::move(w), std::move(sm));
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// AMD KFD CRIU operation, following include/uapi/linux/kfd_ioctl.h.
struct KfdCriuArgs {
  uint64_t devices;
  uint64_t bos;
  uint64_t priv_data;
  uint64_t priv_data_size;
  uint32_t num_devices;
  uint32_t num_bos;
  uint32_t num_objects;
  uint32_t pid;
  uint32_t op;
};
static_assert(sizeof(KfdCriuArgs) == 56, "struct kfd_ioctl_criu_args is 56 bytes");
// _IOWR('K', 0x22, struct kfd_ioctl_criu_args)
constexpr unsigned long kAmdkfdIocCriuOp = _IOWR('K', 0x22, KfdCriuArgs);
static_assert(kAmdkfdIocCriuOp == 0xC0384B22UL, "AMDKFD_IOC_CRIU_OP");

class KfdWorker : public Napi::AsyncWorker {
 public:
  KfdWorker(Napi::Env env, std::string device, uint32_t op, uint32_t pid)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), device_(std::move(device)), op_(op), pid_(pid) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    int fd = open(device_.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      err_ = errno;
      syscall_ = "open";
      return;
    }
    KfdCriuArgs args;
    std::memset(&args, 0, sizeof(args));
    args.pid = pid_;
    args.op = op_;
    if (ioctl(fd, kAmdkfdIocCriuOp, &args) < 0) {
      err_ = errno;
      syscall_ = "ioctl";
    }
    close(fd);
  }
  void OnOK() override {
    if (err_) {
      deferred_.Reject(ErrnoError(Env(), err_, syscall_).Value());
      return;
    }
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string device_;
  uint32_t op_, pid_;
  int err_ = 0;
  const char *syscall_ = "";
};

Napi::Value KfdCriuOp(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t op, pid;
  if (info.Length() < 3 || !info[0].IsString() || !Int(info, 1, 0, 4, &op) || !Int(info, 2, 1, INT32_MAX, &pid)) {
    Napi::TypeError::New(env, "kfdCriuOp(device: string, op: 0..4, pid)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto *w = new KfdWorker(env, info[0].As<Napi::String>().Utf8Value(), static_cast<uint32_t>(op), static_cast<uint32_t>(pid));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("kfdCriuOp", Napi::Function::New(env, KfdCriuOp));
  exports.Set("lockFile", Napi::Function::New(env, LockFile));
  exports.Set("KFD_IOC_CRIU_OP", Napi::Number::New(env, static_cast<double>(kAmdkfdIocCriuOp)));
  exports.Set("KFD_CRIU_ARGS_SIZE", Napi::Number::New(env, sizeof(KfdCriuArgs)));
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen));
  exports.Set("pidfdSendSignal", Napi::Function::New(env, PidfdSendSignal));
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("setChildSubreaper", Napi::Function::New(env, SetChildSubreaper));
  exports.Set("raiseNofileLimit", Napi::Function::New(env, RaiseNofileLimit));
  exports.Set("processVmReadMany", Napi::Function::New(env, ProcessVmReadMany));
  exports.Set("observeTree", Napi::Function::New(env, ObserveTree));
  exports.Set("readCheckpointShared", Napi::Function::New(env, ReadCheckpointShared));
  exports.Set("OBSERVED_FIELDS", Napi::Number::New(env, observed::kFields));
  return exports;
}

}  // namespace

NODE_API_MODULE(stagegate_native, Init)
