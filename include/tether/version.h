/* SPDX-License-Identifier: MIT */
/* tether's version, as numbers and as a string. */
#ifndef TETHER_VERSION_H
#define TETHER_VERSION_H

#define TT_VERSION_MAJOR 0
#define TT_VERSION_MINOR 1
#define TT_VERSION_PATCH 0
#define TT_VERSION_STRING "0.1.0"

#endif
