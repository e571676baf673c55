// readCheckpointShared: what the verify activator needs of a CRIU checkpoint, read off the JS thread.
#pragma once

#include <napi.h>

// readCheckpointShared(dir) -> Promise<{ tasks, files, memfds, mounts }>; see checkpoint_reader.cc.
Napi::Value ReadCheckpointShared(const Napi::CallbackInfo &info);
