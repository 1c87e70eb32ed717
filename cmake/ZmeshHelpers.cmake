# Warnings for our own code only (generated code and third-party headers are exempt).
# -Wno-missing-field-initializers: option structs are meant to be filled with designated
# initializers naming only what differs from the defaults ({.ipc_dir = dir}); GCC 12 warns about
# every field left to its default initializer there.
set(ZMESH_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
                   -Werror=return-type)

# zmesh_library(NAME SOURCES ... DEPS ...): one CMake library per subsystem folder.
function(zmesh_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${name} PRIVATE ${ZMESH_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# zmesh_executable(NAME SOURCES ... DEPS ...)
function(zmesh_executable name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${ZMESH_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
endfunction()

# zmesh_unit_tests: every test labelled "unit" (and what they run), so a build can make just
# those (scripts/test's sanitizer pass runs only the unit label).
add_custom_target(zmesh_unit_tests)

# zmesh_add_test(NAME SOURCES ... DEPS ... [LABELS ...] [TIMEOUT s])
# Every test binary is registered with ctest under the given labels ("unit" by default;
# "integration" for multi-process tests that start real daemons).
function(zmesh_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${ZMESH_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest GTest::gtest_main)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name})
  if("unit" IN_LIST ARG_LABELS)
    add_dependencies(zmesh_unit_tests ${name})
  endif()
  set_tests_properties(${name} PROPERTIES
    LABELS "${ARG_LABELS}"
    TIMEOUT ${ARG_TIMEOUT}
    ENVIRONMENT "ZMESH_BIN_DIR=${CMAKE_BINARY_DIR}/bin;ZMESH_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endfunction()
