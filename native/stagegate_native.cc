// stagegate native addon: the few Linux calls Node.js does not expose.
//   pidfdOpen(pid)                 -> fd            (pidfd_open(2))
//   pidfdSendSignal(fd, signo)     -> undefined     (pidfd_send_signal(2))
//   close(fd)                      -> undefined
//   processVmRead(pid, addr, len)  -> Promise<Buffer> (process_vm_readv(2), off the JS thread)
// Failures throw/reject an Error with `errno` (number) and `syscall` set;
// src/native/index.ts maps them to typed errors.
#include <napi.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <sys/syscall.h>
#include <sys/uio.h>
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

// Reads another process's memory on a worker thread: the call may fault in
// many pages and must not stall the coordinator's event loop.
class VmReadWorker : public Napi::AsyncWorker {
 public:
  VmReadWorker(Napi::Env env, pid_t pid, uint64_t addr, size_t len)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), pid_(pid), addr_(addr), len_(len) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    buf_.resize(len_);
    size_t done = 0;
    while (done < len_) {
      struct iovec local = {buf_.data() + done, len_ - done};
      struct iovec remote = {reinterpret_cast<void *>(addr_ + done), len_ - done};
      ssize_t n = process_vm_readv(pid_, &local, 1, &remote, 1, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        err_ = errno;
        return;
      }
      if (n == 0) {
        err_ = EFAULT;
        return;
      }
      done += static_cast<size_t>(n);
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      deferred_.Reject(ErrnoError(env, err_, "process_vm_readv").Value());
      return;
    }
    deferred_.Resolve(Napi::Buffer<char>::Copy(env, buf_.data(), buf_.size()));
  }
  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  pid_t pid_;
  uint64_t addr_;
  size_t len_;
  std::string buf_;
  int err_ = 0;
};

Napi::Value ProcessVmRead(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t pid, len;
  bool lossless = false;
  if (!Int(info, 0, 1, INT32_MAX, &pid) || info.Length() < 3 || !info[1].IsBigInt() ||
      !Int(info, 2, 0, int64_t(1) << 30, &len)) {
    Napi::TypeError::New(env, "processVmRead(pid, addr: bigint, len <= 1 GiB)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint64_t addr = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) {
    Napi::TypeError::New(env, "processVmRead: addr does not fit in 64 bits").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto *w = new VmReadWorker(env, static_cast<pid_t>(pid), addr, static_cast<size_t>(len));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen));
  exports.Set("pidfdSendSignal", Napi::Function::New(env, PidfdSendSignal));
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("processVmRead", Napi::Function::New(env, ProcessVmRead));
  return exports;
}

}  // namespace

NODE_API_MODULE(stagegate_native, Init)
