// A real S3 server (s3rver: SigV4, rejects wrong keys) on loopback for the cxrtl store tests.
//
//   S3RVER_ACCESS_KEY=... S3RVER_SECRET_KEY=... node server.js [--port N] [--directory DIR] [--stop-on-stdin-eof]
//
// Keys come from the environment so they never show in `ps`. Port 0 (the default) lets the
// kernel pick a free one; the first stdout line is the ready line, JSON:
//   {"ready": true, "address": "127.0.0.1", "port": N, "directory": DIR}
// SIGTERM or SIGINT closes the server; so does the end of stdin with --stop-on-stdin-eof (the test
// fixture holds a pipe, so the server goes when pytest does, even if pytest is killed). A directory
// it made itself is removed.
'use strict'

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { parseArgs } = require('node:util')

const S3rver = require('@20minutes/s3rver')
const { DUMMY_ACCOUNT } = require('@20minutes/s3rver/lib/models/account')
const S3Error = require('@20minutes/s3rver/lib/models/error')

function fail(message) {
  process.stderr.write(`s3rver: ${message}\n`)
  process.exit(2)
}

// s3rver answers AbortMultipartUpload with MethodNotAllowed, but only after it has checked the
// signature and the bucket. Real S3 and MinIO implement it, and the store relies on it to leave no
// incomplete upload behind, so complete it here: remove the upload's parts.
function abortMultipartUpload() {
  return async (ctx, next) => {
    try {
      await next()
    } catch (err) {
      const isAbort = ctx.method === 'DELETE' && 'uploadId' in ctx.query && ctx.params?.key
      if (!(isAbort && err instanceof S3Error && err.code === 'MethodNotAllowed')) throw err
      const uploadDir = path.join(
        ctx.store.getResourcePath(ctx.params.bucket, undefined, 'uploads'),
        path.basename(String(ctx.query.uploadId))
      )
      let key
      try {
        key = fs.readFileSync(path.join(uploadDir, 'key'), 'utf8')
      } catch {
        key = null
      }
      if (key !== ctx.params.key) {
        throw new S3Error('NoSuchUpload', 'The specified upload does not exist.', {
          UploadId: ctx.query.uploadId,
        })
      }
      fs.rmSync(uploadDir, { recursive: true, force: true })
      ctx.status = 204
      ctx.body = null
    }
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      directory: { type: 'string' },
      'stop-on-stdin-eof': { type: 'boolean', default: false },
    },
  })
  const accessKey = process.env.S3RVER_ACCESS_KEY
  const secretKey = process.env.S3RVER_SECRET_KEY
  if (!accessKey || !secretKey) fail('set S3RVER_ACCESS_KEY and S3RVER_SECRET_KEY')
  const port = Number(values.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port ${values.port}: not a port`)

  const ownDirectory = !values.directory
  const directory = values.directory || fs.mkdtempSync(path.join(os.tmpdir(), 's3rver-'))

  // Only our key pair is valid: drop s3rver's built-in S3RVER/S3RVER.
  DUMMY_ACCOUNT.revokeAccessKey('S3RVER')
  DUMMY_ACCOUNT.createKeyPair(accessKey, secretKey)

  const server = new S3rver({ address: '127.0.0.1', port, directory, silent: true })
  // Route middleware runs inside the app's middleware; put ours first so it wraps the router.
  server.middleware.unshift(abortMultipartUpload())
  const address = await server.run()

  const stop = async () => {
    await server.close().catch(() => {})
    if (ownDirectory) fs.rmSync(directory, { recursive: true, force: true })
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  if (values['stop-on-stdin-eof']) {
    process.stdin.on('end', stop)
    process.stdin.resume()
  }

  process.stdout.write(
    `${JSON.stringify({ ready: true, address: address.address, port: address.port, directory })}\n`
  )
}

main().catch((err) => fail(err.stack || String(err)))
