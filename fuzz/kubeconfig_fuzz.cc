// A kubeconfig (the admin's file, or one a provisioning tool wrote): parse it, with base64
// *-data fields and paths relative to its directory (an empty scratch directory here).
#include <cstdint>
#include <fstream>
#include <string>

#include "fuzz_util.h"
#include "kube/client.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static knd::fuzz::ScratchDir* dir = new knd::fuzz::ScratchDir();
  knd::fuzz::Input in(data, size);
  const std::string context = in.Field();
  const std::string path = dir->path() + "/kubeconfig";
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << in.Rest();
  }
  (void)knd::kube::LoadKubeconfig(path, context);
  return 0;
}
