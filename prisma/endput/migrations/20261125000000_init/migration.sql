-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "public";

-- CreateEnum
CREATE TYPE "source_system" AS ENUM ('SYSTEM1', 'SYSTEM2');

-- CreateTable
CREATE TABLE "orders" (
    "id" SERIAL NOT NULL,
    "source_system" "source_system" NOT NULL,
    "source_order_id" INTEGER NOT NULL,
    "message_id" UUID NOT NULL,
    "product" TEXT NOT NULL,
    "price" DECIMAL(12,2) NOT NULL,
    "security_check" BOOLEAN NOT NULL,
    "attempts" INTEGER NOT NULL,
    "processed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "orders_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "orders_processed_at_idx" ON "orders"("processed_at");

-- CreateIndex
CREATE UNIQUE INDEX "orders_source_system_source_order_id_key" ON "orders"("source_system", "source_order_id");

