# Node config of the inventory (which links to publish, resourceName mapping). A separate
# library from knd_config (NetworkConfig) so the two can change independently. Included from
# src/config/CMakeLists.txt.
knd_library(knd_nodeconfig
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/node_config.cc
  DEPS knd_common absl::status absl::statusor absl::strings yaml-cpp)

knd_test(nodeconfig_test LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/node_config_test.cc
  DEPS knd_nodeconfig)
