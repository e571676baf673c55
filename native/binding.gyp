{
  "targets": [
    {
      "target_name": "stagegate_native",
      # build/images.pb-c.c: protoc-c's codec of proto/criu/images.proto (scripts/build.sh makes it)
      "sources": ["stagegate_native.cc", "checkpoint_reader.cc", "../build/images.pb-c.c"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "../build", "<!@(pkg-config --cflags-only-I libprotobuf-c | sed 's/-I//g')"],
      "libraries": ["<!@(pkg-config --libs libprotobuf-c)"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags": ["-Wall", "-Wextra"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"]
    }
  ]
}
