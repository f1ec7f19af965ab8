/* status.c: the small public functions that need no context: status strings (from the one
 * FJ_STATUS_MAP list, so a new code cannot be forgotten here), the last error, and the version. */
#include "flashjit.h"
#include "core/error.h"

#define CORE_STR_(x) #x
#define CORE_STR(x) CORE_STR_(x)
/* CMake passes the project version; test_core compares what we return with the header's numbers, so a
 * release that bumps one and not the other fails there. */
#ifndef FJ_VERSION_STRING
#define FJ_VERSION_STRING \
  CORE_STR(FJ_VERSION_MAJOR) "." CORE_STR(FJ_VERSION_MINOR) "." CORE_STR(FJ_VERSION_PATCH)
#endif

FJ_API const char *fj_status_string(fj_status status) {
  switch (status) {
#define CORE_STATUS_CASE_(name, value, text) \
  case FJ_##name:                            \
    return text;
    FJ_STATUS_MAP(CORE_STATUS_CASE_)
#undef CORE_STATUS_CASE_
  }
  return "unknown status";
}

FJ_API const char *fj_last_error(void) { return core_error_message(); }

FJ_API const char *fj_version_string(void) { return FJ_VERSION_STRING; }
