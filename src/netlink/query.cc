#include "netlink/query.h"
