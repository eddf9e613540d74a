# Helpers shared by every folder.

# knd_library(NAME SOURCES ... DEPS ...): one static library per folder, includes rooted at src/.
function(knd_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src ${PROJECT_BINARY_DIR}/proto)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# knd_test(NAME LABEL unit|privileged|e2e SOURCES ... DEPS ...): a GoogleTest binary run by ctest.
# Privileged tests skip themselves (GTEST_SKIP) when they lack CAP_NET_ADMIN or a kernel feature.
function(knd_test name)
  cmake_parse_arguments(ARG "" "LABEL;TIMEOUT" "SOURCES;DEPS" ${ARGN})
  if(NOT ARG_LABEL)
    set(ARG_LABEL unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS ${ARG_LABEL} TIMEOUT ${ARG_TIMEOUT}
    ENVIRONMENT "KND_SOURCE_DIR=${PROJECT_SOURCE_DIR};KND_BINARY_DIR=${PROJECT_BINARY_DIR}")
  if(ARG_LABEL STREQUAL "privileged" OR ARG_LABEL STREQUAL "e2e")
    # Privileged tests change kernel state in throwaway namespaces; never run two at once.
    set_tests_properties(${name} PROPERTIES RESOURCE_LOCK netns)
  endif()
endfunction()

# knd_proto(NAME PROTOS a.proto ... [GRPC]): compiles .proto files under proto/ into a static
# library; generated headers are included as "<dir>/<file>.pb.h" (rooted at proto/).
function(knd_proto name)
  cmake_parse_arguments(ARG "GRPC" "" "PROTOS" ${ARGN})
  set(srcs)
  set(out_dir ${PROJECT_BINARY_DIR}/proto)
  foreach(p ${ARG_PROTOS})
    get_filename_component(dir ${p} DIRECTORY)
    get_filename_component(base ${p} NAME_WE)
    set(gen ${out_dir}/${dir}/${base}.pb.cc ${out_dir}/${dir}/${base}.pb.h)
    set(args --cpp_out=${out_dir})
    if(ARG_GRPC)
      list(APPEND gen ${out_dir}/${dir}/${base}.grpc.pb.cc ${out_dir}/${dir}/${base}.grpc.pb.h)
      list(APPEND args --grpc_out=${out_dir} --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>)
    endif()
    add_custom_command(
      OUTPUT ${gen}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
      COMMAND protobuf::protoc -I ${PROJECT_SOURCE_DIR}/proto ${args} ${PROJECT_SOURCE_DIR}/proto/${p}
      DEPENDS ${PROJECT_SOURCE_DIR}/proto/${p}
      COMMENT "protoc ${p}")
    list(APPEND srcs ${gen})
  endforeach()
  add_library(${name} STATIC ${srcs})
  # Generated code is not ours to warn about.
  target_compile_options(${name} PRIVATE -w)
  target_include_directories(${name} PUBLIC ${out_dir})
  target_link_libraries(${name} PUBLIC protobuf::libprotobuf)
  if(ARG_GRPC)
    target_link_libraries(${name} PUBLIC gRPC::grpc++)
  endif()
endfunction()
