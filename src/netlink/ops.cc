#include "netlink/ops.h"
