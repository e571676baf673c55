// stagegate native addon: the few Linux calls Node.js does not expose.
//   pidfdOpen(pid)                 -> fd            (pidfd_open(2))
//   pidfdSendSignal(fd, signo)     -> undefined     (pidfd_send_signal(2))
//   close(fd)                      -> undefined
//   processVmReadMany(pid, addrs: BigUint64Array, len)
//                                  -> Promise<Buffer> (len bytes at each address, one after another;
//                                     one process_vm_readv(2) per IOV_MAX of them, off the JS thread)
//   kfdCriuOp(device, op, pid)     -> Promise<void>   (AMDKFD_IOC_CRIU_OP on a KFD device, off the JS thread)
//   lockFile(path)                 -> fd            (open + flock(LOCK_EX|LOCK_NB); close(fd) releases)
// Failures throw/reject an Error with `errno` (number) and `syscall` set;
// src/native/index.ts maps them to typed errors.
#include <napi.h>

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
#include <vector>
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

// Reads `len` bytes at each of many addresses with as few system calls as
// IOV_MAX allows: verifying a tree samples hundreds of pages, and a worker
// round trip per page cost more than the reads (issue #11).
class VmReadManyWorker : public Napi::AsyncWorker {
 public:
  VmReadManyWorker(Napi::Env env, pid_t pid, std::vector<uint64_t> addrs, size_t len)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), pid_(pid), addrs_(std::move(addrs)), len_(len) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    const size_t n = addrs_.size();
    buf_.resize(n * len_);
    std::vector<struct iovec> local, remote;
    size_t i = 0, off = 0;  // the next byte to read: `off` into the read at addrs_[i]
    while (i < n) {
      const size_t count = n - i < IOV_MAX ? n - i : IOV_MAX;
      local.resize(count);
      remote.resize(count);
      for (size_t k = 0; k < count; k++) {
        const size_t skip = k == 0 ? off : 0;
        local[k] = {buf_.data() + (i + k) * len_ + skip, len_ - skip};
        remote[k] = {reinterpret_cast<void *>(addrs_[i + k] + skip), len_ - skip};
      }
      ssize_t got = process_vm_readv(pid_, local.data(), count, remote.data(), count, 0);
      if (got < 0) {
        if (errno == EINTR) continue;
        err_ = errno;
        bad_ = addrs_[i] + off;
        return;
      }
      if (got == 0) {
        err_ = EFAULT;
        bad_ = addrs_[i] + off;
        return;
      }
      // a short read stops inside (or at the start of) the read that faulted: the next call reports it
      for (size_t left = static_cast<size_t>(got); left > 0;) {
        const size_t rest = len_ - off;
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
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      Napi::Error e = ErrnoError(env, err_, "process_vm_readv");
      e.Set("address", Napi::BigInt::New(env, bad_));
      deferred_.Reject(e.Value());
      return;
    }
    // handed over, not copied: the pages of a tree are megabytes
    auto *owned = new std::string(std::move(buf_));
    deferred_.Resolve(Napi::Buffer<char>::New(env, owned->data(), owned->size(),
                                              [](Napi::Env, char *, std::string *o) { delete o; }, owned));
  }
  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  pid_t pid_;
  std::vector<uint64_t> addrs_;
  size_t len_;
  std::string buf_;
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
  return exports;
}

}  // namespace

NODE_API_MODULE(stagegate_native, Init)
