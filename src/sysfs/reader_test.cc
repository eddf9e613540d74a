// Unit tests for the rooted sysfs reader over a fake tree.
#include "sysfs/reader.h"

#include "gtest/gtest.h"
#include "sysfs/fake_tree.h"

namespace knd::sysfs {
namespace {

TEST(ReaderTest, ReadsStringsAndInts) {
  FakeTree t;
  t.Write("class/x/a", "hello  ");
  t.Write("class/x/n", "-1");
  t.Write("class/x/h", "0x15b3");
  t.Write("class/x/bad", "abc");
  Reader r(t.root() + "/");
  EXPECT_EQ(*r.ReadString("class/x/a"), "hello");
  EXPECT_EQ(*r.ReadInt("class/x/n"), -1);
  EXPECT_EQ(*r.ReadInt("class/x/h"), 0x15b3);
  absl::Status bad = r.ReadInt("class/x/bad").status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.ToString().find("class/x/bad"), std::string::npos);
  EXPECT_EQ(r.ReadString("class/x/missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(r.Exists("class/x/a"));
  EXPECT_FALSE(r.Exists("class/x/missing"));
}

TEST(ReaderTest, LinksResolveInsideTheRoot) {
  FakeTree t;
  std::string dev = t.AddPciFunction("pci0000:00", "0000:03:00.0", "0x15b3", "0x1017", "mlx5_core",
                                     0, "0000:00:01.0");
  t.AddNetdev("ens1f0", dev, 4);
  Reader r(t.root());
  auto link = r.ReadLink("class/net/ens1f0/device");
  ASSERT_TRUE(link.ok()) << link.status();
  EXPECT_EQ(link->front(), '.');  // stored relative, like the kernel's
  auto res = r.Resolve("class/net/ens1f0/device");
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(*res, "devices/pci0000:00/0000:00:01.0/0000:03:00.0");
  EXPECT_EQ(Basename(*r.ReadLink("class/net/ens1f0/device/driver")), "mlx5_core");
  t.Link("class/net/evil", "/etc");
  EXPECT_EQ(r.Resolve("class/net/evil").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(r.ReadLink("class/net/ens1f0/mtu").ok());  // not a link
}

TEST(ReaderTest, ListDirSorted) {
  FakeTree t;
  t.Write("d/b", "1");
  t.Write("d/a", "1");
  t.MakeDir("d/c");
  Reader r(t.root());
  EXPECT_EQ(*r.ListDir("d"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(r.ListDir("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST(BasenameTest, Basics) {
  EXPECT_EQ(Basename("../../bus/pci/drivers/ixgbe"), "ixgbe");
  EXPECT_EQ(Basename("x/"), "x");
  EXPECT_EQ(Basename("x"), "x");
}

}  // namespace
}  // namespace knd::sysfs
