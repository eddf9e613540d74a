/* The floor of an attach: only the kernel move of a netdev into another network namespace,
 * one RTM_NEWLINK carrying IFLA_NET_NS_FD (plus its ack), nothing else. The link is named by
 * IFLA_IFNAME (ifi_index 0), so no lookup precedes the move.
 *
 *   knd-bench-floor IFNAME TARGET_NETNS_PATH [SOURCE_NETNS_PATH]
 *
 * With SOURCE_NETNS_PATH the process first enters that namespace (to move a link back).
 * Prints the time of the netlink exchange alone, in nanoseconds, on stdout. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void add_attr(struct nlmsghdr* h, unsigned short type, const void* data, size_t len) {
  struct rtattr* a = (struct rtattr*)((char*)h + NLMSG_ALIGN(h->nlmsg_len));
  a->rta_type = type;
  a->rta_len = (unsigned short)RTA_LENGTH(len);
  memcpy(RTA_DATA(a), data, len);
  h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
}

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: %s IFNAME TARGET_NETNS_PATH [SOURCE_NETNS_PATH]\n", argv[0]);
    return 2;
  }
  const char* ifname = argv[1];
  if (strlen(ifname) >= 16) {
    fprintf(stderr, "interface name %s: longer than 15 bytes\n", ifname);
    return 2;
  }
  int target = open(argv[2], O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    fprintf(stderr, "open target netns %s: %s\n", argv[2], strerror(errno));
    return 1;
  }
  if (argc == 4) {
    int src = open(argv[3], O_RDONLY | O_CLOEXEC);
    if (src < 0 || setns(src, CLONE_NEWNET) != 0) {
      fprintf(stderr, "enter source netns %s: %s\n", argv[3], strerror(errno));
      return 1;
    }
    close(src);
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) {
    fprintf(stderr, "netlink socket: %s\n", strerror(errno));
    return 1;
  }
  union {
    char buf[512];
    struct nlmsghdr align;
  } req;
  memset(&req, 0, sizeof(req));
  struct nlmsghdr* h = &req.align;
  h->nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
  h->nlmsg_type = RTM_NEWLINK;
  h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  h->nlmsg_seq = 1;
  struct ifinfomsg* ifi = NLMSG_DATA(h);
  ifi->ifi_family = AF_UNSPEC;
  add_attr(h, IFLA_IFNAME, ifname, strlen(ifname) + 1);
  uint32_t nsfd = (uint32_t)target;
  add_attr(h, IFLA_NET_NS_FD, &nsfd, sizeof(nsfd));

  union {
    char buf[4096];
    struct nlmsghdr align;
  } ack;
  int64_t t0 = now_ns();
  if (send(fd, h, h->nlmsg_len, 0) < 0) {
    fprintf(stderr, "send RTM_NEWLINK for %s: %s\n", ifname, strerror(errno));
    return 1;
  }
  ssize_t n = recv(fd, ack.buf, sizeof(ack.buf), 0);
  int64_t t1 = now_ns();
  if (n < (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) || ack.align.nlmsg_type != NLMSG_ERROR) {
    fprintf(stderr, "move %s: no netlink ack\n", ifname);
    return 1;
  }
  const struct nlmsgerr* e = NLMSG_DATA(&ack.align);
  if (e->error != 0) {
    fprintf(stderr, "move %s into %s: %s\n", ifname, argv[2], strerror(-e->error));
    return 1;
  }
  printf("%lld\n", (long long)(t1 - t0));
  return 0;
}
