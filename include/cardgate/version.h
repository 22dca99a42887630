#ifndef CARDGATE_VERSION_H
#define CARDGATE_VERSION_H

#include "error.h"

#define CG_VERSION_MAJOR 0
#define CG_VERSION_MINOR 1
#define CG_VERSION_PATCH 0
#define CG_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif
/* The library's version string ("0.1.0"), static. */
CG_EXTERN const char *cg_version(void);
#ifdef __cplusplus
}
#endif
#endif /* CARDGATE_VERSION_H */
