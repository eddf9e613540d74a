#include "sysfs/fake_tree.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace knd::sysfs {
namespace fs = std::filesystem;

namespace {
// "a/b/c" relative from directory "x/y" -> "../../a/b/c" (both relative to the root).
std::string RelTarget(const std::string& from_dir, const std::string& to) {
  return fs::path(to).lexically_relative(fs::path(from_dir)).string();
}
}  // namespace

FakeTree::FakeTree() {
  std::string tmpl = (fs::temp_directory_path() / "knd-sysfs-XXXXXX").string();
  char* dir = mkdtemp(tmpl.data());
  if (dir == nullptr) std::abort();
  root_ = dir;
}

FakeTree::~FakeTree() {
  std::error_code ec;
  fs::remove_all(root_, ec);
}

void FakeTree::MakeDir(const std::string& rel) { fs::create_directories(fs::path(root_) / rel); }

void FakeTree::Write(const std::string& rel, const std::string& content) {
  fs::path p = fs::path(root_) / rel;
  fs::create_directories(p.parent_path());
  std::ofstream(p) << content << "\n";
}

void FakeTree::Link(const std::string& rel, const std::string& target) {
  fs::path p = fs::path(root_) / rel;
  fs::create_directories(p.parent_path());
  std::error_code ec;
  fs::remove(p, ec);
  fs::create_symlink(target, p);
}

std::string FakeTree::AddPciFunction(const std::string& pcie_root, const std::string& bdf,
                                     const std::string& vendor, const std::string& device,
                                     const std::string& driver, int numa_node,
                                     const std::string& bridge) {
  std::string dir = "devices/" + pcie_root + "/" + (bridge.empty() ? "" : bridge + "/") + bdf;
  MakeDir(dir);
  Write(dir + "/vendor", vendor);
  Write(dir + "/device", device);
  Write(dir + "/numa_node", std::to_string(numa_node));
  if (!driver.empty()) {
    MakeDir("bus/pci/drivers/" + driver);
    Link(dir + "/driver", RelTarget(dir, "bus/pci/drivers/" + driver));
  }
  MakeDir("bus/pci/devices");
  Link("bus/pci/devices/" + bdf, RelTarget("bus/pci/devices", dir));
  return dir;
}

void FakeTree::AddNetdev(const std::string& ifname, const std::string& device_dir, int ifindex,
                         int speed) {
  std::string dir =
      device_dir.empty() ? "devices/virtual/net/" + ifname : device_dir + "/net/" + ifname;
  MakeDir(dir);
  Write(dir + "/ifindex", std::to_string(ifindex));
  Write(dir + "/mtu", "1500");
  if (speed >= 0) Write(dir + "/speed", std::to_string(speed));
  if (!device_dir.empty()) Link(dir + "/device", RelTarget(dir, device_dir));
  MakeDir("class/net");
  Link("class/net/" + ifname, RelTarget("class/net", dir));
}

void FakeTree::AddRdma(const std::string& rdma, const std::string& device_dir) {
  std::string dir = device_dir + "/infiniband/" + rdma;
  MakeDir(dir);
  Link(dir + "/device", RelTarget(dir, device_dir));
  MakeDir("class/infiniband");
  Link("class/infiniband/" + rdma, RelTarget("class/infiniband", dir));
}

}  // namespace knd::sysfs
