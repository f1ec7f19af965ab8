/* test_files.h: file-system helpers the tests share for their temporary folders. Header-only, like
 * check.h, so that each test stays one .c file. */
#ifndef FJ_TESTS_TEST_FILES_H
#define FJ_TESTS_TEST_FILES_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* rm -rf: a folder with everything under it, or a single file. Symbolic links are removed, never
 * followed (lstat), so a test's cleanup cannot reach outside its folder. */
static inline void remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    unlink(path);
    return;
  }
  DIR *d = opendir(path);
  if (d != NULL) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      char child[4096];
      int length = snprintf(child, sizeof child, "%s/%s", path, e->d_name);
      if (length > 0 && (size_t)length < sizeof child) remove_tree(child);
    }
    closedir(d);
  }
  rmdir(path);
}
#endif
