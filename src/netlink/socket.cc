#include "netlink/socket.h"
